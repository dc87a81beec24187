"""Samples of requests and the numbers made from them: ONE percentile and ONE latency summary."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: `started` is time.monotonic() when it was sent."""

    started: float
    latency_ms: float
    status: int | None
    upstream: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        """A 2xx answer with a complete body."""
        return self.error is None and self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50Ms": _round(self.p50_ms),
            "p95Ms": _round(self.p95_ms),
            "p99Ms": _round(self.p99_ms),
            "maxMs": _round(self.max_ms),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The percentile every command reports: nearest rank, no interpolation.

    For q in 0..100 and n values, the value of rank ceil(q/100 * n) in ascending order (at least
    rank 1), so it is always a latency that was measured. For 1..20 ms: p50 = 10, p95 = 19,
    p99 = 20. None when there are no values (an empty run has no percentile, never 0).
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def answered_latencies(samples: Iterable[Sample]) -> list[float]:
    """The latencies every summary is made of: those of the requests that got a complete HTTP
    answer, whatever its status (a 503 is an answer a user waited for). A request with no answer
    (refused, reset, timed out) has no latency to speak of: it counts as a failure, never here."""
    return [s.latency_ms for s in samples if s.error is None and s.status is not None]


def latency_summary(samples: Iterable[Sample]) -> LatencySummary:
    """p50/p95/p99/max of `answered_latencies`; every field None for a run with no answer."""
    values = answered_latencies(samples)
    return LatencySummary(
        count=len(values),
        p50_ms=percentile(values, 50),
        p95_ms=percentile(values, 95),
        p99_ms=percentile(values, 99),
        max_ms=max(values) if values else None,
    )
