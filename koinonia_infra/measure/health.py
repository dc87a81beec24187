"""The ONE `/health` contract and the ONE rule for "healthy", used by every command."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    detail: str
    latency_ms: float | None = None


Probe = Callable[[str], HealthResult]


def health_url(base_url: str, path: str = "/health") -> str:
    return base_url.rstrip("/") + path


def probe_health(url: str, *, timeout: float = 5.0) -> HealthResult:
    """GET a /health URL: healthy is 200 with `status: ok`; otherwise a one-line reason."""
    from koinonia_infra.measure.fetch import fetch

    fetched = fetch(url, timeout=timeout, max_body_bytes=64 << 10)
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
        return HealthResult(
            ok=False, detail=f"HTTP {sample.status} {status}{suffix}"[:120], latency_ms=latency
        )
    reason = problem or "unexpected /health answer"
    return HealthResult(
        ok=False, detail=f"HTTP {sample.status}: {reason}"[:120], latency_ms=latency
    )
