"""The ONE `/health` contract and the ONE rule for "healthy", used by every command.

The contract (docs/sandbox.md, "The reference API instance"): `GET /health` answers
`200 {"status": "ok", "database": "connected", "redis": "connected", ...}` when both datastores
answer, and `503 {"status": "degraded", "database": "ok"|"down", "redis": "ok"|"down", ...}` when
either does not.

The rule: healthy is HTTP 200 AND a JSON object body whose `status` is "ok". Anything else is
unhealthy with a one-line reason: no answer (the request's reason), a non-200 status, a body that
is not JSON (a 200 with a plain-text or HTML body is some other server answering), or a JSON body
whose `status` is not "ok". `verify`'s instance-health check applies this rule and then checks
more of the body (the datastores' fields, the environment); every other command (status, drill,
rollout, resume, up, destroy-instance, sandbox status) stops at the rule.

Render's own health check is looser: any 2xx or 3xx within 5 seconds passes
(https://render.com/docs/health-checks, "Health check protocol"). So a deploy Render calls live
can still be unhealthy here (a 200 from the wrong server, a degraded body): the tool's verdict
is about our contract, Render's only about routing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from koinonia_infra.measure.fetch import Fetched

# A /health body is a few hundred bytes; anything much larger is not our contract.
HEALTH_MAX_BODY = 64 << 10
DETAIL_LIMIT = 120


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    detail: str  # "ok", or the one-line reason it is not
    latency_ms: float | None = None


Probe = Callable[[str], HealthResult]


def health_url(base_url: str, path: str = "/health") -> str:
    return base_url.rstrip("/") + path


def judge_health(fetched: Fetched) -> HealthResult:
    """The rule (see the module docstring) applied to one GET of a /health URL."""
    sample = fetched.sample
    if sample.error is not None:
        return HealthResult(ok=False, detail=sample.error, latency_ms=None)
    latency = round(sample.latency_ms, 1)
    data, problem = fetched.json()
    status = data.get("status") if isinstance(data, dict) else None
    if sample.status == 200 and status == "ok":
        return HealthResult(ok=True, detail="ok", latency_ms=latency)
    if isinstance(data, dict) and status is not None:
        down = [k for k in ("database", "redis") if data.get(k) in ("down", "disconnected")]
        suffix = f" ({', '.join(down)} down)" if down else ""
        detail = f"HTTP {sample.status} {status}{suffix}"
    else:
        detail = f"HTTP {sample.status}: {problem or 'unexpected /health answer'}"
    return HealthResult(ok=False, detail=detail[:DETAIL_LIMIT], latency_ms=latency)


def probe_health_many(
    urls: Sequence[str],
    *,
    timeout: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[HealthResult]:
    """GET each /health URL at once and judge each answer; results in the order of `urls`."""
    from koinonia_infra.measure.fetch import fetch_many

    fetched = fetch_many(urls, timeout=timeout, max_body_bytes=HEALTH_MAX_BODY, transport=transport)
    return [judge_health(f) for f in fetched]


def probe_health(
    url: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
) -> HealthResult:
    """GET one /health URL and judge the answer; never raises for network trouble."""
    return probe_health_many([url], timeout=timeout, transport=transport)[0]
