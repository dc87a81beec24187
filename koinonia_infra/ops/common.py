"""What the day-2 operations share: the traffic seam, checks, traffic summaries, how a run ends,
and signal handling. Health probes, attribution and polling live in `koinonia_infra.measure`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from koinonia_infra.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    KoinoniaError,
    OperationFailed,
)
from koinonia_infra.measure.attribution import Attributor
from koinonia_infra.measure.health import health_url
from koinonia_infra.measure.samples import Sample, latency_summary

# ---- traffic seam ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrafficTotals:
    samples: Sequence[Sample]
    duration: float
    target_rate: float
    achieved_rate: float
    missed: int = 0


class TrafficRun(Protocol):
    """Steady traffic in the background; `now()` is on the same clock as `Sample.started`."""

    def now(self) -> float: ...

    def samples(self) -> Sequence[Sample]: ...

    def stop(self) -> TrafficTotals: ...


StartTraffic = Callable[[str, float], TrafficRun]


# ---- checks and summaries ------------------------------------------------------------------------


class ReportModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Check(ReportModel):
    name: str
    passed: bool | None  # None: not reached (the operation stopped before it)
    measured: str
    threshold: str = ""
    # A check that qualifies the measurement (e.g. the generator's rate) rather than the service.
    gating: bool = True

    @property
    def mark(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


class TrafficSummary(ReportModel):
    target_rate: float
    achieved_rate: float
    duration_seconds: float
    total_requests: int
    failed_requests: int
    # Of answered requests (measure.samples.latency_summary); None when nothing was answered.
    max_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    served_by: dict[str, int]
    errors: dict[str, int]
    # Sends the generator could not make on schedule: counted apart from failed requests.
    missed_sends: int = 0


def served_by(samples: Sequence[Sample], attribute: Attributor) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            continue
        number = attribute(s)
        key = f"api-{number}" if number is not None else (s.upstream or "unknown")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarize(totals: TrafficTotals, attribute: Attributor) -> TrafficSummary:
    samples = totals.samples
    latency = latency_summary(samples)
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            reason = s.error or f"HTTP {s.status}"
            if s.upstream:
                number = attribute(s)
                reason += f" from {f'api-{number}' if number is not None else s.upstream}"
            errors[reason] = errors.get(reason, 0) + 1
    return TrafficSummary(
        target_rate=totals.target_rate,
        achieved_rate=round(totals.achieved_rate, 1),
        duration_seconds=round(totals.duration, 2),
        total_requests=len(samples),
        failed_requests=sum(1 for s in samples if not s.ok),
        max_latency_ms=_ms(latency.max_ms),
        p50_latency_ms=_ms(latency.p50_ms),
        p95_latency_ms=_ms(latency.p95_ms),
        p99_latency_ms=_ms(latency.p99_ms),
        served_by=served_by(samples, attribute),
        errors=dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
        missed_sends=totals.missed,
    )


def traffic_checks(summary: TrafficSummary, *, rate_tolerance: float = 0.05) -> list[Check]:
    low = summary.target_rate * (1 - rate_tolerance)
    return [
        Check(
            name="no failed requests through the edge",
            passed=summary.failed_requests == 0,
            measured=f"{summary.failed_requests} of {summary.total_requests}",
            threshold="0",
        ),
        Check(
            name="traffic held its rate",
            passed=summary.achieved_rate >= low,
            measured=f"{summary.achieved_rate:g} req/s",
            threshold=f">= {low:g} req/s ({summary.target_rate:g} - {rate_tolerance:.0%})",
            gating=False,
        ),
    ]


class Confirm(Protocol):
    """Asks the user before an operation that takes capacity away or loads a deployment:
    returns to go on, raises to stop. `what` names the operation when nobody can answer."""

    def __call__(self, question: str, *, what: str) -> None: ...


# ---- how a run ends ------------------------------------------------------------------------------

Outcome = Literal["passed", "failed", "interrupted", "error"]


@dataclass(slots=True)
class Ending:
    """The verdict of an operation that, once traffic runs, reports instead of raising."""

    outcome: Outcome = "passed"
    error: str | None = None
    exit_code: int = EXIT_OK

    def judge(self, checks: Sequence[Check]) -> None:
        """A run that went through still fails when a gating check failed."""
        failing = [f"{c.name}: {c.measured}" for c in checks if c.passed is False and c.gating]
        if self.outcome == "passed" and failing:
            self.outcome, self.exit_code, self.error = "failed", EXIT_FAILED, "; ".join(failing)


def run_to_end(body: Callable[[], None]) -> Ending:
    """Run `body`; Ctrl-C (and TERM/HUP/QUIT, see `sigterm_as_interrupt`) or a project error end it
    with a verdict instead of propagating, so the caller's cleanup and report always happen."""
    try:
        body()
    except KeyboardInterrupt as exc:
        # Which signal matters afterwards: a HUP means the operator's terminal is gone.
        why = f"interrupted by {exc}" if isinstance(exc, SignalInterrupt) else "interrupted"
        return Ending("interrupted", why, EXIT_INTERRUPTED)
    except KoinoniaError as exc:
        outcome: Outcome = "failed" if isinstance(exc, OperationFailed) else "error"
        return Ending(outcome, exc.message, exc.exit_code)
    return Ending()


# ---- signals -----------------------------------------------------------------------------------

# Every signal that ends the process by default and that someone sends to stop it: Ctrl-C (INT),
# `kill`/systemd/a cancelled CI job (TERM), a closed terminal or dropped SSH session (HUP, the most
# likely accident during a drill), Ctrl-\ (QUIT). KILL and STOP cannot be caught; `resume` is the
# way back from those.
GRACEFUL_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    if hasattr(signal, name)
)


class SignalInterrupt(KeyboardInterrupt):
    """A graceful stop signal turned into the interrupt every cleanup path already handles."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """TERM, HUP and QUIT raise KeyboardInterrupt like Ctrl-C, so cleanup paths see one kind of
    stop. A signal already ignored when we start stays ignored: under `nohup` the user asked to
    outlive the terminal, and Python itself leaves an inherited ignored SIGINT alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, _frame: object) -> None:
        raise SignalInterrupt(signum)

    previous: dict[signal.Signals, Any] = {}
    for sig in GRACEFUL_SIGNALS:
        if sig is signal.SIGINT or signal.getsignal(sig) is signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred_signals(received: list[int]) -> Iterator[None]:
    """Hold every graceful stop signal while cleanup runs (a second Ctrl-C, or the HUP that
    follows a closed terminal, must not skip the resume); the signals seen are appended to
    `received`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _record(signum: int, _frame: object) -> None:
        received.append(signum)

    previous: dict[signal.Signals, Any] = {}
    for sig in GRACEFUL_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, _record)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---- the real seams ----------------------------------------------------------------------------


class SteadyRun:
    """`TrafficRun` over `measure.load.SteadyTraffic` (GET <edge>/health at a rate)."""

    def __init__(self, url: str, rate: float) -> None:
        from koinonia_infra.measure.load import SteadyTraffic

        self._traffic = SteadyTraffic(health_url(url), rate=rate)
        self._traffic.start()

    def now(self) -> float:
        return time.monotonic()

    def samples(self) -> Sequence[Sample]:
        return self._traffic.samples()

    def stop(self) -> TrafficTotals:
        result = self._traffic.stop()
        return TrafficTotals(
            samples=result.samples,
            duration=result.duration_s,
            target_rate=result.target_rate,
            achieved_rate=result.achieved_rate,
            missed=result.missed,
        )
