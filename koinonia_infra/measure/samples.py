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

    @property
    def finished(self) -> float:
        return self.started + self.latency_ms / 1000.0


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
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(samples: Iterable[Sample]) -> LatencySummary:
    """Latencies of the requests that got a complete answer (errors have no latency to speak of)."""
    values = [s.latency_ms for s in samples if s.error is None and s.status is not None]
    return LatencySummary(
        count=len(values),
        p50_ms=percentile(values, 50),
        p95_ms=percentile(values, 95),
        p99_ms=percentile(values, 99),
        max_ms=max(values) if values else None,
    )


def served_by(samples: Iterable[Sample], upstream: str) -> list[Sample]:
    return [s for s in samples if s.upstream == upstream and s.ok]


def last_served(
    samples: Iterable[Sample], upstream: str, *, before: float | None = None
) -> Sample | None:
    """The last successful sample served by `upstream` (sent before `before`, if given)."""
    hits = [s for s in served_by(samples, upstream) if before is None or s.started < before]
    return max(hits, key=lambda s: s.started, default=None)


def first_served(
    samples: Iterable[Sample], upstream: str, *, after: float | None = None
) -> Sample | None:
    """The first successful sample served by `upstream` (sent after `after`, if given)."""
    hits = [s for s in served_by(samples, upstream) if after is None or s.started > after]
    return min(hits, key=lambda s: s.started, default=None)
