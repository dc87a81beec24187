"""What `verify` takes (options) and gives (a report of checks), with its stable JSON form."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from koinonia_infra.settings import SmokeCheck, VerifySettings

SCHEMA_VERSION = 1
# Longer than the edge's default retry window (EdgeSettings.retry_window_seconds, 5 s): see
# VerifyOptions.timeout_seconds.
DEFAULT_TIMEOUT_SECONDS = 10.0
CheckStatus = Literal["pass", "fail", "skip"]


class VerifyOptions(BaseModel):
    """Thresholds and traffic shape; defaults from `VerifySettings` (the runbook)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: int = Field(default=200, ge=1, le=1_000_000)
    concurrency: int = Field(default=16, ge=1, le=1024)
    share_tolerance_points: float = Field(default=10.0, gt=0, le=100)
    p95_ms: float = Field(default=250.0, gt=0)
    p50_ratio: float = Field(default=2.0, ge=1)
    # Below this, p50 differences are noise (scheduling, not the instance): p50s and their
    # confidence bounds under it count as it. Interleaved requests on a shared 2-core machine
    # answer in ~1 ms with single runs at 3 ms; through Render's edge from a CI runner a p50
    # is tens of ms, so the floor never hides a production difference (docs/verify.md).
    p50_floor_ms: float = Field(default=10.0, ge=0)
    # latency-similarity's own sample: this many requests per instance, `similarity_concurrency`
    # at a time, after the burst (the burst's queueing on a saturated box says which process
    # the scheduler favoured, not which instance is slower: docs/verify.md).
    similarity_per_instance: int = Field(default=40, ge=1, le=10_000)
    similarity_concurrency: int = Field(default=2, ge=1, le=64)
    similarity_min_samples: int = Field(default=20, ge=1)
    max_error_rate_percent: float = Field(default=0.1, ge=0, le=100)
    # None: the deployment descriptor's own `environment`.
    environment: str | None = None
    wait_seconds: float = Field(default=0.0, ge=0, le=86_400)
    # Each request's deadline. Longer than the edge's retry window (EdgeSettings
    # .retry_window_seconds, 5 s), after which Caddy itself answers 503 "no upstreams available"
    # (caddyserver/caddy v2.6.2 modules/caddyhttp/reverseproxy/reverseproxy.go:524): with the
    # two equal, a request the edge gave up on was reported as a client timeout. With --stack,
    # the stack's edge.retryWindowSeconds + 5 s when that is longer.
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=300)
    # The whole run, `wait_seconds` included; None: derived (`deadline()`).
    deadline_seconds: float | None = Field(default=None, gt=0, le=86_400)
    health_path: str = "/health"
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    # The functional checks (`koinonia:verify.smoke`; verify/smoke.py), run on every target.
    smoke: tuple[SmokeCheck, ...] = ()

    def deadline(self, instances: int) -> float:
        """Seconds the whole run may take: `deadline_seconds`, else `wait_seconds` plus one
        attempt's budget. A passing attempt fits in it by construction: health reads and their
        re-read (a timeout each), the Render API (15 s), and every round of the burst and of the
        similarity sample at twice the p95 limit plus one timeout for stragglers. A burst that
        has not ended by then is failing its latency check anyway."""
        if self.deadline_seconds is not None:
            return self.deadline_seconds
        burst_rounds = math.ceil(self.requests / self.concurrency) + 2  # + the warm-up
        similarity_rounds = math.ceil(
            self.similarity_per_instance * instances / self.similarity_concurrency
        )
        per_round = 2 * self.p95_ms / 1000.0
        attempt = 3 * self.timeout_seconds + 15.0 + (burst_rounds + similarity_rounds) * per_round
        if self.smoke:  # sent all at once: one more request deadline
            attempt += self.timeout_seconds
        return self.wait_seconds + attempt

    @classmethod
    def from_settings(
        cls,
        settings: VerifySettings | None = None,
        *,
        use_environment: bool = False,
        **overrides: Any,
    ) -> VerifyOptions:
        """Settings (stack file or defaults) first, then the non-None `overrides` (flags)."""
        s = settings or VerifySettings()
        values: dict[str, Any] = {
            "requests": s.requests,
            "concurrency": s.concurrency,
            "share_tolerance_points": s.share_tolerance_points,
            "p95_ms": s.p95_ms,
            "p50_ratio": s.p50_ratio,
            "max_error_rate_percent": s.max_error_rate_percent,
            "smoke": tuple(s.smoke),
        }
        if use_environment:
            values["environment"] = s.environment
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)


@dataclass
class CheckResult:
    """One check on one target. `measured` and `threshold` are short human strings; `values`
    holds the same measurements as numbers for machines."""

    id: str
    name: str
    target: str
    status: CheckStatus
    measured: str
    threshold: str
    reason: str | None = None
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.target)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "target": self.target,
            "status": self.status,
            "passed": self.passed,
            "measured": self.measured,
            "threshold": self.threshold,
            "reason": self.reason,
            "values": self.values,
        }


@dataclass
class VerifyReport:
    deployment: dict[str, Any]
    options: VerifyOptions
    checks: list[CheckResult]
    started_at: str
    duration_seconds: float
    attempts: int = 1
    traffic: dict[str, Any] = field(default_factory=dict)
    # The run's effective deadline (options.deadline(), or the flag).
    deadline_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """No check failed. Skipped checks (nothing to observe them with) do not fail the run;
        they are listed, and left unticked in the sign-off."""
        return not any(c.status == "fail" for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "fail"]

    def to_json(self) -> dict[str, Any]:
        counts = {s: sum(1 for c in self.checks if c.status == s) for s in ("pass", "fail", "skip")}
        return {
            "schemaVersion": SCHEMA_VERSION,
            "passed": self.passed,
            "summary": {
                "passed": counts["pass"],
                "failed": counts["fail"],
                "skipped": counts["skip"],
            },
            "startedAt": self.started_at,
            "durationSeconds": round(self.duration_seconds, 3),
            "attempts": self.attempts,
            "deployment": self.deployment,
            "thresholds": {
                "requests": self.options.requests,
                "concurrency": self.options.concurrency,
                "shareTolerancePoints": self.options.share_tolerance_points,
                "p95Ms": self.options.p95_ms,
                "p50Ratio": self.options.p50_ratio,
                "p50FloorMs": self.options.p50_floor_ms,
                "maxErrorRatePercent": self.options.max_error_rate_percent,
                "environment": self.deployment.get("environment"),
                "waitSeconds": self.options.wait_seconds,
                "timeoutSeconds": self.options.timeout_seconds,
                "deadlineSeconds": round(self.deadline_seconds, 3),
            },
            "traffic": self.traffic,
            "checks": [c.to_json() for c in self.checks],
        }

    def to_markdown(self) -> str:
        from koinonia_infra.verify.signoff import render_markdown

        return render_markdown(self)
