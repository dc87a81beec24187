"""`verify --capacity`: the runbook's "2x concurrent-user capacity" claim, measured.

Concurrency through the edge is ramped (1, 2, 4, 8, 12, 16, 24, 32, … up to the ceiling) with
the existing load generator (`traffic.burst_async`, one keep-alive connection per worker, a
warm-up per step); each step runs for about `step_seconds`. The ramp stops at the first failed
request, at the first step whose p95 is past the threshold, at the concurrency ceiling or at the
duration ceiling. The knee is the last step within the threshold with no error: its concurrency
and its req/s.

`--compare-single` measures again with every instance but the first suspended through Render's
API, and reports the ratio N ÷ 1 of the knees' req/s (and of their concurrency). The suspended
instances are ALWAYS resumed, as the failover drill's instance is: on success, on any error, on
Ctrl-C, SIGTERM, SIGHUP and SIGQUIT (the drill's `sigterm_as_interrupt` / `deferred_signals`),
and the CLI holds the same deployment lock as the drill and rollout (ops/guard.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    OperationFailed,
    RenderApiError,
    UsageError,
)
from koinonia_infra.measure.attribution import Attributor
from koinonia_infra.measure.client import run_load
from koinonia_infra.measure.health import Probe, health_url, probe_health
from koinonia_infra.measure.load import BurstResult, burst_async
from koinonia_infra.measure.poll import Sleep, wait_healthy, wait_until
from koinonia_infra.measure.samples import latency_summary
from koinonia_infra.ops.common import (
    Confirm,
    Ending,
    deferred_signals,
    run_to_end,
    sigterm_as_interrupt,
)
from koinonia_infra.ops.guard import Guard, deployment_lock, resume_hint
from koinonia_infra.ops.timing import OpsTiming, timing_for
from koinonia_infra.render_api import RenderClient
from koinonia_infra.settings import VerifySettings
from koinonia_infra.textsafe import md

if TYPE_CHECKING:
    from koinonia_infra.targets import DeploymentSource

# Concurrency levels of the ramp: doubling first, then steps of about 1.5x so the knee is
# found within a third of its value.
LEVELS: Final = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
MIN_STEP_REQUESTS: Final = 100
MAX_STEP_REQUESTS: Final = 20_000

# (url, requests, concurrency, deadline) → the step's burst. The real one is `burst_step`.
Measure = Callable[[str, int, int, float], BurstResult]
Progress = Callable[[str], None]


def _first_error(completed: int, failed: int, _recent: object) -> str | None:
    # "Stops at the first sign of errors": one failed request ends the step and the ramp.
    return f"a request failed after {completed}" if failed else None


def burst_step(url: str, requests: int, concurrency: int, deadline: float) -> BurstResult:
    """One step of the ramp: a warm-up round per connection, then `requests` at `concurrency`,
    ended by the first failure or the ramp's deadline."""
    return run_load(
        burst_async(
            url,
            requests,
            concurrency,
            warmup=2 * concurrency,
            stop_when=_first_error,
            deadline=deadline,
        )
    )


@dataclass
class Step:
    concurrency: int
    requests: int
    failed: int
    requests_per_second: float
    p50_ms: float | None
    p95_ms: float | None
    within: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "failed": self.failed,
            "requestsPerSecond": round(self.requests_per_second, 1),
            "p50Ms": None if self.p50_ms is None else round(self.p50_ms, 2),
            "p95Ms": None if self.p95_ms is None else round(self.p95_ms, 2),
            "withinThreshold": self.within,
        }


@dataclass
class Ramp:
    """One ramp: its steps, its knee, and why it stopped."""

    label: str
    instances: int
    steps: list[Step] = field(default_factory=list)
    stopped: str = ""
    # True: a limit was crossed (the knee is measured); False: a ceiling ended the ramp first,
    # so the knee is a lower bound.
    knee_found: bool = False

    @property
    def knee(self) -> Step | None:
        within = [s for s in self.steps if s.within]
        return within[-1] if within else None

    def to_json(self) -> dict[str, Any]:
        knee = self.knee
        return {
            "label": self.label,
            "instances": self.instances,
            "kneeConcurrency": knee.concurrency if knee else None,
            "kneeRequestsPerSecond": round(knee.requests_per_second, 1) if knee else None,
            "kneeFound": self.knee_found,
            "stopped": self.stopped,
            "steps": [s.to_json() for s in self.steps],
        }


def ramp(
    url: str,
    *,
    label: str,
    instances: int,
    p95_ms: float,
    max_concurrency: int,
    max_seconds: float,
    step_seconds: float = 2.0,
    measure: Measure = burst_step,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Progress | None = None,
) -> Ramp:
    """Ramp concurrency on `url` until an error, p95 past `p95_ms`, or a ceiling."""
    say = on_progress or (lambda _msg: None)
    result = Ramp(label=label, instances=instances)
    deadline = clock() + max_seconds
    rate = 0.0
    levels = [c for c in LEVELS if c <= max_concurrency]
    if not levels or levels[-1] != max_concurrency:
        levels.append(max_concurrency)
    for concurrency in levels:
        if clock() >= deadline:
            result.stopped = f"duration ceiling ({max_seconds:g} s) reached"
            return result
        # About `step_seconds` at the rate the previous step reached.
        planned = int(min(MAX_STEP_REQUESTS, max(MIN_STEP_REQUESTS, rate * step_seconds)))
        burst = measure(url, planned, concurrency, deadline)
        lat = latency_summary(burst.samples)
        failed = sum(1 for s in burst.samples if not s.ok) + burst.warmup_failures
        step = Step(
            concurrency=concurrency,
            requests=len(burst.samples),
            failed=failed,
            requests_per_second=burst.requests_per_second,
            p50_ms=lat.p50_ms,
            p95_ms=lat.p95_ms,
            within=False,
        )
        result.steps.append(step)
        rate = max(rate, burst.requests_per_second)
        p95 = f"{lat.p95_ms:.1f} ms" if lat.p95_ms is not None else "-"
        say(f"{label}: concurrency {concurrency}: {burst.requests_per_second:.0f} req/s, p95 {p95}")
        if failed:
            reason = next((s.error or f"HTTP {s.status}" for s in burst.samples if not s.ok), None)
            reason = reason or next(
                (s.error or f"HTTP {s.status}" for s in burst.warmup_failed), "failed"
            )
            result.stopped = f"{failed} failed at concurrency {concurrency}: {reason}"
            result.knee_found = True
            return result
        if burst.stopped is not None:
            result.stopped = f"duration ceiling ({max_seconds:g} s) reached during a step"
            return result
        if lat.p95_ms is None or lat.p95_ms > p95_ms:
            result.stopped = f"p95 {p95} past {p95_ms:g} ms at concurrency {concurrency}"
            result.knee_found = True
            return result
        step.within = True
    result.stopped = f"concurrency ceiling ({max_concurrency}) reached within the threshold"
    return result


@dataclass
class CapacityReport:
    edge_url: str
    p95_ms: float
    max_concurrency: int
    max_seconds: float
    path: str = "/health"
    ramps: list[Ramp] = field(default_factory=list)
    single_instance: int | None = None
    suspended: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    outcome: str = "passed"
    error: str | None = None
    exit_code: int = 0

    @property
    def ratio(self) -> float | None:
        """Knee req/s with every instance ÷ with one (the runbook's "2x capacity")."""
        if len(self.ramps) < 2:
            return None
        many, one = self.ramps[0].knee, self.ramps[1].knee
        if many is None or one is None or one.requests_per_second <= 0:
            return None
        return many.requests_per_second / one.requests_per_second

    @property
    def concurrency_ratio(self) -> float | None:
        if len(self.ramps) < 2:
            return None
        many, one = self.ramps[0].knee, self.ramps[1].knee
        if many is None or one is None:
            return None
        return many.concurrency / one.concurrency

    def to_json(self) -> dict[str, Any]:
        ratio, cratio = self.ratio, self.concurrency_ratio
        return {
            "kind": "capacity",
            "outcome": self.outcome,
            "error": self.error,
            "exitCode": self.exit_code,
            "edgeUrl": self.edge_url,
            "path": self.path,
            "p95Ms": self.p95_ms,
            "maxConcurrency": self.max_concurrency,
            "maxSeconds": self.max_seconds,
            "ramps": [r.to_json() for r in self.ramps],
            "singleInstance": self.single_instance,
            "suspended": self.suspended,
            "resumed": self.resumed,
            "ratio": None if ratio is None else round(ratio, 2),
            "concurrencyRatio": None if cratio is None else round(cratio, 2),
        }


# ---- the plot ----------------------------------------------------------------------------------

_BAR_WIDTH: Final = 40
_EIGHTHS: Final = " ▏▎▍▌▋▊▉"


def _bar(value: float, scale: float) -> str:
    cells = max(0.0, min(value / scale, 1.0)) * _BAR_WIDTH if scale > 0 else 0.0
    full, part = int(cells), int((cells - int(cells)) * 8)
    return ("█" * full + (_EIGHTHS[part] if part and full < _BAR_WIDTH else "")).ljust(_BAR_WIDTH)


def plot(report: CapacityReport) -> list[str]:
    """Latency against concurrency for every ramp, on one scale (the threshold marked `|`):
    plain text, the same in the terminal and in the Markdown report's code block."""
    p95s = [s.p95_ms for r in report.ramps for s in r.steps if s.p95_ms is not None]
    scale = max([report.p95_ms * 1.25, *p95s]) if p95s else report.p95_ms
    mark = min(_BAR_WIDTH - 1, int(report.p95_ms / scale * _BAR_WIDTH))
    lines = [f"p95 latency by concurrency (| = {report.p95_ms:g} ms threshold)"]
    for r in report.ramps:
        lines.append(f"{r.label}:")
        for s in r.steps:
            bar = list(_bar(s.p95_ms or 0.0, scale))
            if bar[mark] == " ":
                bar[mark] = "|"
            p95 = f"{s.p95_ms:8.1f} ms" if s.p95_ms is not None else "       - ms"
            flag = "" if s.within else (" errors" if s.failed else " over")
            lines.append(
                f"  c={s.concurrency:<5} {''.join(bar)} {p95} {s.requests_per_second:8.0f} req/s"
                f"{flag}"
            )
    return lines


def summary_lines(report: CapacityReport) -> list[str]:
    lines: list[str] = []
    for r in report.ramps:
        knee = r.knee
        if knee is None:
            lines.append(f"{r.label}: no step within {report.p95_ms:g} ms ({r.stopped})")
            continue
        bound = "" if r.knee_found else " (at least: a ceiling ended the ramp)"
        lines.append(
            f"{r.label}: knee at concurrency {knee.concurrency}, "
            f"{knee.requests_per_second:.0f} req/s, p95 {knee.p95_ms or 0:.1f} ms{bound}; "
            f"stopped: {r.stopped}"
        )
    if report.ratio is not None:
        cratio = report.concurrency_ratio
        lines.append(
            f"capacity ratio {report.ramps[0].instances} instances ÷ 1: "
            f"{report.ratio:.2f}x req/s"
            + (f", {cratio:.2f}x concurrency" if cratio is not None else "")
        )
    if report.suspended:
        back = "yes" if set(report.resumed) >= set(report.suspended) else "NO"
        lines.append(
            "suspended for the single-instance ramp: "
            + ", ".join(f"api-{n}" for n in report.suspended)
            + f"; resumed: {back}"
        )
    return lines


def markdown(report: CapacityReport) -> str:
    verdict = {"passed": "measured", "interrupted": "INTERRUPTED"}.get(report.outcome, "FAILED")
    lines = [
        "# Capacity through the edge",
        "",
        f"- Result: **{verdict}**" + (f": {report.error}" if report.error else ""),
        f"- Load: GET {md(report.edge_url)}{md(report.path)} through the edge",
        f"- p95 threshold {report.p95_ms:g} ms; ceilings: concurrency "
        f"{report.max_concurrency}, {report.max_seconds:g} s per ramp",
        *(f"- {line}" for line in summary_lines(report)),
        "",
        "```text",
        *plot(report),
        "```",
        "",
        "| ramp | concurrency | requests | failed | req/s | p50 ms | p95 ms | within |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report.ramps:
        for s in r.steps:
            p50 = "-" if s.p50_ms is None else f"{s.p50_ms:.1f}"
            p95 = "-" if s.p95_ms is None else f"{s.p95_ms:.1f}"
            lines.append(
                f"| {r.label} | {s.concurrency} | {s.requests} | {s.failed} | "
                f"{s.requests_per_second:.0f} | {p50} | {p95} | {'yes' if s.within else 'no'} |"
            )
    return "\n".join([*lines, ""])


# ---- the measurement, with --compare-single -----------------------------------------------------


class _Suspension:
    """All instances but `keep` suspended; every one of them brought back whatever happens."""

    def __init__(
        self,
        descriptor: Descriptor,
        client: RenderClient,
        keep: int,
        *,
        probe: Probe,
        timing: OpsTiming,
        sleep: Sleep,
        clock: Callable[[], float],
        say: Progress,
        flags: str,
    ) -> None:
        self.descriptor, self.client, self.keep = descriptor, client, keep
        self.probe, self.timing, self.sleep, self.say = probe, timing, sleep, say
        self.clock = clock
        self.flags = flags
        self.requested: list[int] = []
        self.resumed: list[int] = []

    def others(self) -> list[int]:
        return sorted(i.number for i in self.descriptor.instances if i.number != self.keep)

    def suspend(self, measure_edge: Callable[[], list[int | None]]) -> None:
        timing = self.timing
        for number in self.others():
            inst = self.descriptor.instance(number)
            self.requested.append(number)
            self.client.suspend(inst.service_id)
            self.say(f"suspend api-{number} requested")
        for number in self.requested:
            if not wait_until(
                self._suspended(number),
                timeout=timing.suspend_timeout_seconds,
                clock=self.clock,
                sleep=self.sleep,
                interval=timing.poll_interval_seconds,
            ):
                raise OperationFailed(
                    f"the API did not report api-{number} suspended within "
                    f"{timing.suspend_timeout_seconds:g}s ({timing.target} timing)"
                )
        # The single-instance ramp must measure one instance: the edge must have stopped
        # routing to the others (its health checks take them out).
        if not wait_until(
            lambda: all(n == self.keep for n in measure_edge()),
            timeout=timing.drain_timeout_seconds,
            clock=self.clock,
            sleep=self.sleep,
            interval=0.2,
        ):
            raise OperationFailed(
                f"the edge still routed to the suspended instances "
                f"{timing.drain_timeout_seconds:g}s after the API reported them suspended"
            )
        self.say(f"only api-{self.keep} serves through the edge")

    def _suspended(self, number: int) -> Callable[[], bool]:
        sid = self.descriptor.instance(number).service_id
        return lambda: self.client.get_service(sid).is_suspended

    def resume_all(self) -> None:
        """Resume every instance this run suspended; tolerate a resume that already went
        through (as the drill does), then wait for each to answer /health."""
        for number in self.requested:
            if number in self.resumed:
                continue
            sid = self.descriptor.instance(number).service_id
            for _ in range(3):
                try:
                    self.client.resume(sid)
                except RenderApiError as exc:
                    with contextlib.suppress(RenderApiError):
                        if not self.client.get_service(sid).is_suspended:
                            self.resumed.append(number)
                            break
                    self.say(f"resume api-{number} failed: {exc.message}")
                    self.sleep(1.0)
                else:
                    self.resumed.append(number)
                    self.say(f"api-{number} resumed")
                    break
        budget = self.timing.healthy_timeout_seconds + (
            self.timing.deploy_appear_timeout_seconds + self.timing.deploy_timeout_seconds
            if self.timing.resume_creates_deploy
            else 0.0
        )
        for number in self.resumed:
            inst = self.descriptor.instance(number)
            health = wait_healthy(
                self.probe, health_url(inst.url), timeout=budget, clock=self.clock, sleep=self.sleep
            )
            if not health.ok:
                self.say(f"api-{number} not healthy after its resume: {health.detail}")

    def missing(self) -> list[str]:
        return [
            resume_hint(n, self.descriptor.instance(n).name, self.flags)
            for n in self.requested
            if n not in self.resumed
        ]


def edge_sampler(descriptor: Descriptor, count: int = 20) -> Callable[[], list[int | None]]:
    """A few requests through the edge, each attributed to the instance that answered."""
    attribute = Attributor(descriptor)
    url = health_url(descriptor.edge_url)

    def sample() -> list[int | None]:
        burst = run_load(burst_async(url, count, 2))
        return [attribute(s) for s in burst.samples]

    return sample


def run_capacity(
    descriptor: Descriptor,
    *,
    p95_ms: float,
    max_concurrency: int,
    max_seconds: float,
    compare_single: bool = False,
    path: str = "/health",
    client: RenderClient | None = None,
    probe: Probe | None = None,
    measure: Measure = burst_step,
    sample_edge: Callable[[], list[int | None]] | None = None,
    timing: OpsTiming | None = None,
    sleep: Sleep = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    step_seconds: float = 2.0,
    on_progress: Progress | None = None,
    resume_flags: str = "",
) -> CapacityReport:
    """The ramp with every instance; with `compare_single`, again with one (the others
    suspended, then always resumed). Preflight refusals raise; after that, a report."""
    say = on_progress or (lambda _msg: None)
    url = health_url(descriptor.edge_url, path)
    report = CapacityReport(
        edge_url=descriptor.edge_url,
        path=path,
        p95_ms=p95_ms,
        max_concurrency=max_concurrency,
        max_seconds=max_seconds,
    )
    count = len(descriptor.instances)
    keep = min(i.number for i in descriptor.instances)
    suspension: _Suspension | None = None
    if compare_single:
        if client is None or probe is None:
            raise OperationFailed("--compare-single suspends instances: it needs the Render API")
        if count < 2:
            raise OperationFailed("--compare-single needs at least two instances")
        # Every instance in service before any is taken out (the drill's preflight).
        Guard(descriptor, client, probe, flags=resume_flags).require(
            "suspend instances for the single-instance ramp", exclude=None
        )
        suspension = _Suspension(
            descriptor,
            client,
            keep,
            probe=probe,
            timing=timing or timing_for(descriptor),
            sleep=sleep,
            clock=clock,
            say=say,
            flags=resume_flags,
        )
        report.single_instance = keep

    def ramp_for(label: str, instances: int) -> None:
        report.ramps.append(
            ramp(
                url,
                label=label,
                instances=instances,
                p95_ms=p95_ms,
                max_concurrency=max_concurrency,
                max_seconds=max_seconds,
                step_seconds=step_seconds,
                measure=measure,
                clock=clock,
                on_progress=say,
            )
        )

    def body() -> None:
        ramp_for(f"{count} instance{'s' if count > 1 else ''}", count)
        if suspension is not None:
            suspension.suspend(sample_edge or edge_sampler(descriptor))
            ramp_for(f"1 instance (api-{keep})", 1)

    signals: list[int] = []
    try:
        ending = run_to_end(body)
    finally:
        if suspension is not None:
            with deferred_signals(signals):
                suspension.resume_all()
    if signals and ending.outcome == "passed":
        ending = Ending("interrupted", "interrupted", EXIT_INTERRUPTED)
    report.outcome, report.error, report.exit_code = ending.outcome, ending.error, ending.exit_code
    if suspension is not None:
        report.suspended, report.resumed = list(suspension.requested), list(suspension.resumed)
        missing = suspension.missing()
        if missing:
            report.outcome, report.exit_code = "failed", EXIT_FAILED
            report.error = "; ".join([report.error or "not every instance was resumed", *missing])
    return report


def measure_capacity(
    source: DeploymentSource,
    *,
    p95_ms: float | None,
    max_concurrency: int | None,
    max_seconds: float | None,
    compare_single: bool,
    path: str,
    confirm: Confirm,
    on_progress: Progress,
) -> CapacityReport:
    """`verify --capacity` on the deployment `source` names: ceilings and threshold from the
    flags (None: not given), else the stack file (for the sandbox, the stack it runs), else the
    defaults; a real deployment is loaded only once `confirm` lets it, as the drill asks."""
    sandbox = source.sandbox_stack()
    stack_settings = source.stack_settings
    if sandbox is not None:
        settings = sandbox.verify
    else:
        settings = stack_settings.verify if stack_settings is not None else VerifySettings()
    if not path.startswith("/"):
        # Before the deployment is resolved: a typo costs nothing.
        raise UsageError(f"--capacity-path {path!r}: must start with '/'")
    descriptor = source.descriptor()
    threshold = p95_ms if p95_ms is not None else settings.p95_ms
    ceiling = max_concurrency if max_concurrency is not None else settings.capacity_max_concurrency
    seconds = max_seconds if max_seconds is not None else settings.capacity_max_seconds
    client = source.client(descriptor, required="--compare-single") if compare_single else None
    # Closed however it ends, a declined confirmation included.
    with client or contextlib.nullcontext():
        if descriptor.sandbox_timing is None:
            # Load on a real deployment is a risk of its own: its users share what is measured.
            single = ", then with all but one instance suspended" if compare_single else ""
            confirm(
                f"Load {descriptor.edge_url} up to {ceiling} concurrent requests for up to "
                f"{seconds:g}s{single}?",
                what="verify --capacity loads the deployment",
            )
        lock = (
            deployment_lock(descriptor, "verify --capacity --compare-single")
            if compare_single
            else contextlib.nullcontext()
        )
        with sigterm_as_interrupt(), lock:
            return run_capacity(
                descriptor,
                p95_ms=threshold,
                max_concurrency=ceiling,
                max_seconds=seconds,
                compare_single=compare_single,
                path=path,
                client=client,
                probe=probe_health,
                on_progress=on_progress,
                resume_flags=source.flags,
            )
