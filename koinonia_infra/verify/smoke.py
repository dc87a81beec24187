"""The runbook's functional checks in `verify`: "API endpoints work on both instances", "database
queries work from both", "Redis cache accessible from both", and "no errors in build logs".

Smoke checks (`koinonia:verify.smoke`, settings.SmokeCheck) run against every instance directly
and through the edge, each one check line per target. The sandbox's reference instance serves
`/smoke/database` (reads PostgreSQL) and `/smoke/cache` (reads and writes a Redis key), which
`--target sandbox` checks by default (`SANDBOX_SMOKE`).

Build logs: Render's `GET /logs` with `type=build` and `level=error` (cloudy-sky-software/
pulumi-render, provider/cmd/pulumi-gen-render/openapi.yml: "Types include `app` for application
logs, `request` for request logs, and `build` for build logs"), over the window of the latest
deploy of every service (`createdAt` … `finishedAt` of the spec's `deploy`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import RenderApiError
from koinonia_infra.measure.fetch import make_http_client
from koinonia_infra.measure.poll import poll
from koinonia_infra.measure.reasons import describe_error
from koinonia_infra.ops.logs import log_check, scan_errors
from koinonia_infra.settings import SmokeCheck
from koinonia_infra.verify.checks import join_url, label, service_ids
from koinonia_infra.verify.model import CheckResult, VerifyOptions

if TYPE_CHECKING:
    import httpx

    from koinonia_infra.render_api import RenderClient

SMOKE_ID: Final = "smoke"
BUILD_LOGS_ID: Final = "build-logs"
# The sandbox reference instance's two endpoints (sandbox/api_server.py).
SANDBOX_SMOKE: Final = (
    SmokeCheck(name="database", path="/smoke/database", json_field="database.now"),
    SmokeCheck(name="cache", path="/smoke/cache", json_field="cache.value"),
)
# Without a deploy that says when it was built, the build logs of the last hour are read.
DEFAULT_BUILD_WINDOW: Final = timedelta(hours=1)
_BACKOFF_START = 0.5
_BACKOFF_MAX = 5.0


def targets(descriptor: Descriptor) -> list[tuple[str, str]]:
    """(target label, base URL): every instance directly, then the edge."""
    return [(label(i), i.url) for i in descriptor.instances] + [("edge", descriptor.edge_url)]


def _field(data: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


@dataclass(frozen=True, slots=True)
class Answer:
    """What one smoke request got: status and body, or the one-line reason it got none."""

    status: int | None
    body: bytes | None
    ms: float
    error: str | None = None


class _TooLarge(Exception):
    pass


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > cap:
            raise _TooLarge(f"response body larger than {cap} bytes")
    return bytes(body)


async def _send(client: httpx.AsyncClient, method: str, url: str, options: VerifyOptions) -> Answer:
    """Redirects are not followed: a smoke check names the status it expects, a 3xx included.
    The body is capped like every other read of verify."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(options.timeout_seconds):
            async with client.stream(method, url) as response:
                body = await _read_capped(response, options.max_body_bytes)
                status = response.status_code
    except asyncio.CancelledError:
        raise
    except _TooLarge as exc:
        return Answer(None, None, (time.monotonic() - started) * 1000.0, str(exc))
    except Exception as exc:  # every failure is a check result, never an escape
        ms = (time.monotonic() - started) * 1000.0
        where = urlsplit(url).netloc or url
        return Answer(
            None, None, ms, describe_error(exc, where=where, timeout=options.timeout_seconds)
        )
    return Answer(status, body, (time.monotonic() - started) * 1000.0)


def _threshold(check: SmokeCheck) -> str:
    tail = f", `{check.json_field}` in the JSON answer" if check.json_field else ""
    return f"{check.method} {check.path} → {check.expect_status}{tail}"


def judge(check: SmokeCheck, target: str, url: str, answer: Answer) -> CheckResult:
    """One smoke check on one target from what was received."""
    status, body, ms, error = answer.status, answer.body, answer.ms, answer.error
    values: dict[str, Any] = {
        "url": url,
        "method": check.method,
        "httpStatus": status,
        "latencyMs": round(ms, 1),
    }
    result = CheckResult(
        id=SMOKE_ID,
        name=f"Smoke: {check.name}",
        target=target,
        status="fail",
        measured=error or f"HTTP {status} in {ms:.0f} ms",
        threshold=_threshold(check),
        values=values,
    )
    if error is not None or status is None:
        result.reason = error or "no answer"
        return result
    if status != check.expect_status:
        result.reason = f"HTTP {status}, expected {check.expect_status}"
        return result
    if check.json_field is not None:
        try:
            data = json.loads((body or b"").decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            result.reason = "the answer is not JSON"
            return result
        present, _ = _field(data, check.json_field)
        values["fieldPresent"] = present
        if not present:
            result.reason = f"no `{check.json_field}` in the JSON answer"
            return result
        result.measured += f", `{check.json_field}` present"
    result.status = "pass"
    return result


async def _run(
    descriptor: Descriptor, checks: Sequence[SmokeCheck], options: VerifyOptions
) -> list[CheckResult]:
    pairs = [(c, t, join_url(base, c.path)) for c in checks for t, base in targets(descriptor)]
    async with make_http_client(
        timeout=options.timeout_seconds,
        max_connections=max(len(pairs), 1),
        follow_redirects=False,
    ) as client:
        sent = await asyncio.gather(*(_send(client, c.method, url, options) for c, _, url in pairs))
    return [judge(c, t, url, answer) for (c, t, url), answer in zip(pairs, sent, strict=True)]


def run_smoke(
    descriptor: Descriptor,
    checks: Sequence[SmokeCheck],
    options: VerifyOptions,
    *,
    until: float = 0.0,
    on_progress: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    """Every smoke check on every target, at once; the failing ones again with backoff until
    `until` (time.monotonic(); verify's `--wait`), keeping the last observation of each."""
    if not checks:
        return []
    say = on_progress or (lambda _msg: None)
    say(f"smoke checks: {len(checks)} on {len(descriptor.instances)} instance(s) and the edge")
    results: list[CheckResult] | None = None

    def observe() -> list[CheckResult]:
        """Every check the first time; then only the failing ones, the passing ones kept."""
        nonlocal results
        fresh = asyncio.run(_run(descriptor, checks, options))
        if results is not None:
            failing = {(r.name, r.target) for r in results if r.status == "fail"}
            again = {(r.name, r.target): r for r in fresh}
            fresh = [again[(r.name, r.target)] if (r.name, r.target) in failing else r
                     for r in results]  # fmt: skip
        results = fresh
        return fresh

    return poll(
        observe,
        lambda now: not any(r.status == "fail" for r in now),
        deadline=until,
        interval=_BACKOFF_START,
        backoff=2.0,
        max_interval=_BACKOFF_MAX,
    )


def build_log_check(
    descriptor: Descriptor,
    render: RenderClient | None,
    *,
    render_skip: str | None = None,
    now: datetime | None = None,
) -> CheckResult:
    """The sign-off's "no errors in build logs": error-level build lines of every service over
    the window of their latest deploys."""
    result = CheckResult(
        id=BUILD_LOGS_ID,
        name="Build logs",
        target="all",
        status="skip",
        measured="not read",
        threshold="0 error-level lines of type build",
    )
    if render is None:
        result.reason = render_skip or "no Render API client"
        return result
    roles = {sid: role for role, sid in service_ids(descriptor).items()}
    end = now or datetime.now(UTC)
    starts: list[datetime] = []
    ends: list[datetime] = []
    for sid in roles:
        try:
            deploy = render.latest_deploy(sid)
        except RenderApiError as exc:
            result.reason = f"Render API: {exc.message}"
            return result
        if deploy is not None and deploy.created_at is not None:
            starts.append(deploy.created_at)
            ends.append(deploy.finished_at or end)
    start = min(starts) if starts else end - DEFAULT_BUILD_WINDOW
    window_end = max([*ends, start])
    scan = scan_errors(render, roles, start=start, end=window_end, types=["build"])
    check = log_check("no errors in build logs", scan)
    result.measured = check.measured
    result.values = {
        "errorCount": scan.error_count,
        "first": scan.first,
        "start": start.isoformat(),
        "end": window_end.isoformat(),
    }
    if check.passed is None:
        result.reason = scan.reason
    elif check.passed:
        result.status = "pass"
    else:
        result.status = "fail"
        result.reason = check.measured
    return result
