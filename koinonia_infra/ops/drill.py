"""`drill failover`: the runbook's failover test, measured.

Steady traffic through the edge; suspend instance K through the API; measure failed requests,
latency and how long until K stopped receiving traffic; resume K; wait until it is healthy and the
edge sends it traffic again. K is resumed on every path out (error, Ctrl-C, SIGTERM, timeout).

Every step waits on an event the API or the traffic shows (the suspend reported, the resume's
deploy live, /health, the edge routing to K), polled to a deadline of the target's timing:
Render's for a real deployment, the sandbox profile's for the sandbox (ops/timing.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from koinonia_infra.descriptor import Descriptor, InstanceRef
from koinonia_infra.errors import EXIT_INTERRUPTED, OperationFailed, RenderApiError
from koinonia_infra.measure.attribution import Attributor, first_served_after
from koinonia_infra.measure.health import Probe, health_url, probe_health
from koinonia_infra.measure.poll import Sleep, wait_healthy, wait_until
from koinonia_infra.measure.samples import Sample, latency_summary
from koinonia_infra.ops.common import (
    Check,
    Confirm,
    Ending,
    Outcome,
    ReportModel,
    StartTraffic,
    SteadyRun,
    TrafficRun,
    TrafficSummary,
    deferred_signals,
    run_to_end,
    served_by,
    sigterm_as_interrupt,
    summarize,
    traffic_checks,
)
from koinonia_infra.ops.guard import WATCH_INTERVAL_SECONDS, Guard, deployment_lock, resume_hint
from koinonia_infra.ops.logs import LogScan, find_owner, instance_roles, log_check, scan_errors
from koinonia_infra.ops.logs import now as wall_clock
from koinonia_infra.ops.timing import OpsTiming, TimingFlags, timing_for, timing_of
from koinonia_infra.render_api import Deploy, RenderClient

if TYPE_CHECKING:
    from koinonia_infra.targets import DeploymentSource


class TimelineEvent(ReportModel):
    at: float  # seconds since the traffic started
    event: str


class DrillReport(TrafficSummary):
    kind: Literal["drill-failover"] = "drill-failover"
    outcome: Outcome
    error: str | None = None
    instance: int
    service: str
    service_id: str
    suspended: bool
    resumed: bool
    seconds_until_drained: float | None
    seconds_to_rejoin: float | None
    # Measured, each from the call it follows (suspend or resume): the target's sequence.
    seconds_to_suspended: float | None = None
    resume_deploy: str | None = None
    seconds_to_resume_live: float | None = None
    seconds_to_healthy: float | None = None
    # The deadlines the drill waited with, and which target's timings they are.
    timing: dict[str, Any] = Field(default_factory=dict)
    baseline_p95_latency_ms: float | None
    suspended_p95_latency_ms: float | None
    served_by_while_suspended: dict[str, int]
    checks: list[Check]
    timeline: list[TimelineEvent]
    exit_code: int = 0
    # The instances' error-level log lines over the drill's window (Render's /logs).
    logs: LogScan | None = None


LOG_CHECK = "no errors in the instances' logs during the drill"


class _Drill:
    def __init__(
        self,
        descriptor: Descriptor,
        client: RenderClient,
        target: InstanceRef,
        *,
        traffic: TrafficRun,
        probe: Probe,
        sleep: Sleep,
        on_event: Callable[[str], None] | None = None,
        guard: Guard | None = None,
        timing: OpsTiming | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.timing = timing or timing_for(descriptor)
        self.guard = guard
        self.client = client
        self.target = target
        self.traffic = traffic
        self.probe = probe
        self.sleep = sleep
        self.attribute = Attributor(descriptor)
        self.on_event = on_event
        self.t0 = traffic.now()
        self.timeline: list[TimelineEvent] = []
        self.suspend_requested = False
        self.resumed = False
        self.t_suspend: float | None = None
        self.t_drained: float | None = None
        self.t_resume: float | None = None
        self.api_says_suspended: bool | None = None
        self.t_suspended: float | None = None
        self.resume_deploy: Deploy | None = None
        self.t_resume_live: float | None = None
        self.t_healthy: float | None = None
        self.rejoin_sample: Sample | None = None

    def note(self, event: str) -> None:
        at = round(self.traffic.now() - self.t0, 3)
        self.timeline.append(TimelineEvent(at=at, event=event))
        if self.on_event is not None:
            # The terminal is gone (SIGHUP, dropped SSH): the timeline still has the event,
            # and the resume must not be skipped for a line nobody can read.
            with contextlib.suppress(OSError):
                self.on_event(f"{at:6.2f}s  {event}")

    def run(
        self,
        *,
        duration: float,
        settle: float,
    ) -> None:
        k, sid = self.target.number, self.target.service_id
        clock = self.traffic.now
        timing = self.timing
        self.sleep(settle)
        self.note("baseline measured")

        if self.guard is not None:
            # Right before the suspend, not only in the preflight: another drill, rollout or
            # operator may have taken another instance down during the baseline.
            self.guard.require(f"suspend api-{k}", exclude=k)
        self.suspend_requested = True
        self.t_suspend = t_suspend = clock()
        self.client.suspend(sid)
        self.note(f"suspend api-{k} requested")
        self.wait_suspended()

        # Drained: no answer from K for a quiet second while the others keep answering.
        quiet = 1.0

        def drained() -> bool:
            now = clock()
            if now - t_suspend < quiet:
                return False
            recent = [s for s in self.traffic.samples() if s.started >= now - quiet]
            from_k = [s for s in recent if self.attribute(s) == k]
            return not from_k and any(s.ok for s in recent)

        drain_timeout = timing.drain_timeout_seconds
        if not wait_until(
            drained, timeout=drain_timeout, clock=clock, sleep=self.sleep, interval=0.1
        ):
            raise OperationFailed(
                f"api-{k} ({self.target.name}) still received traffic {drain_timeout:g}s "
                f"after the API reported it suspended ({timing.target} timing)"
            )
        self.t_drained = clock()
        self.note(f"api-{k} no longer receives traffic")

        # `--duration` counts from the suspend taking effect: on Render that is well after the
        # call (see ops/timing.py).
        hold_until = (self.t_suspended or t_suspend) + duration
        while clock() < hold_until:
            self.sleep(min(0.1, hold_until - clock()))

        # Deploys listed before the resume: on Render the resume is a new one (trigger
        # `service_resumed`), told apart from these by its id.
        known = {d.id for d in self.client.list_deploys(sid, limit=5)}
        self.t_resume = clock()
        self.client.resume(sid)
        self.resumed = True
        self.note(f"resume api-{k} requested")
        self.follow_resume_deploy(known)

        healthy_timeout = timing.healthy_timeout_seconds
        health = wait_healthy(
            self.probe,
            health_url(self.target.url),
            timeout=healthy_timeout,
            clock=clock,
            sleep=self.sleep,
        )
        if not health.ok:
            raise OperationFailed(
                f"api-{k} ({self.target.name}) not healthy {healthy_timeout:g}s after its "
                f"resume{' went live' if self.resume_deploy else ''} ({timing.target} timing): "
                f"{health.detail}"
            )
        self.t_healthy = clock()
        self.note(f"api-{k} /health ok")

        t_resume = self.t_resume

        def rejoined() -> bool:
            self.rejoin_sample = first_served_after(
                self.traffic.samples(), self.attribute, k, t_resume
            )
            return self.rejoin_sample is not None

        rejoin_timeout = timing.rejoin_timeout_seconds
        if not wait_until(
            rejoined, timeout=rejoin_timeout, clock=clock, sleep=self.sleep, interval=0.1
        ):
            raise OperationFailed(
                f"the edge did not route to api-{k} ({self.target.name}) again within "
                f"{rejoin_timeout:g}s of it answering /health ({timing.target} timing)"
            )
        self.note(f"edge routes to api-{k} again")
        self.sleep(settle)
        self.note("split observed after rejoin")

    def wait_suspended(self) -> None:
        """Poll until the API reports K suspended: Render answers the call with 202 and
        suspends asynchronously (ops/timing.py)."""
        sid, k, timing = self.target.service_id, self.target.number, self.timing

        def suspended() -> bool:
            self.api_says_suspended = self.client.get_service(sid).is_suspended
            return self.api_says_suspended

        if not wait_until(
            suspended,
            timeout=timing.suspend_timeout_seconds,
            clock=self.traffic.now,
            sleep=self.sleep,
            interval=timing.poll_interval_seconds,
        ):
            raise OperationFailed(
                f"the API did not report api-{k} ({self.target.name}) suspended within "
                f"{timing.suspend_timeout_seconds:g}s of the suspend ({timing.target} timing)"
            )
        self.t_suspended = self.traffic.now()
        self.note(f"API reports api-{k} suspended")

    def follow_resume_deploy(self, known: set[str]) -> None:
        """Wait for the deploy the resume started until it is live; raise if it fails.

        On Render (and the sandbox's `render` profile) the resume IS a deploy that builds and
        boots; it must be listed within the target's bound. Elsewhere a deploy is followed only
        if one shows up."""
        sid, k, timing = self.target.service_id, self.target.number, self.timing
        clock = self.traffic.now

        def listed() -> bool:
            latest = self.client.latest_deploy(sid)
            if latest is not None and latest.id not in known:
                self.resume_deploy = latest
            return self.resume_deploy is not None

        if timing.resume_creates_deploy:
            if not wait_until(
                listed,
                timeout=timing.deploy_appear_timeout_seconds,
                clock=clock,
                sleep=self.sleep,
                interval=timing.poll_interval_seconds,
            ):
                raise OperationFailed(
                    f"no deploy of api-{k} ({self.target.name}) was listed within "
                    f"{timing.deploy_appear_timeout_seconds:g}s of its resume "
                    f"({timing.target} timing: a resume is a deploy there)"
                )
        else:
            listed()
        deploy = self.resume_deploy
        if deploy is None:
            return
        self.note(f"api-{k} resume deploy {deploy.id} {deploy.status}")
        if deploy.in_progress:
            try:
                deploy = self.client.wait_for_deploy(
                    sid, deploy.id, timeout=timing.deploy_timeout_seconds
                )
            except OperationFailed as exc:
                raise OperationFailed(
                    f"api-{k} ({self.target.name}): resume {exc.message} ({timing.target} timing)"
                ) from None
            self.resume_deploy = deploy
        if not deploy.succeeded:
            raise OperationFailed(
                f"api-{k} ({self.target.name}): resume deploy {deploy.id} {deploy.status}"
            )
        self.t_resume_live = clock()
        assert self.t_resume is not None
        self.note(f"api-{k} resume deploy {deploy.id} live after {clock() - self.t_resume:.1f}s")

    def ensure_resumed(self) -> None:
        """Resume K whatever happened; tolerate a resume that already went through."""
        if not self.suspend_requested or self.resumed:
            return
        sid = self.target.service_id
        for attempt in range(3):
            try:
                self.client.resume(sid)
            except RenderApiError as exc:
                try:
                    if not self.client.get_service(sid).is_suspended:
                        self.resumed = True
                        self.note(f"api-{self.target.number} already running")
                        return
                except RenderApiError:
                    pass
                self.note(f"resume attempt {attempt + 1} failed: {exc.message}")
                self.sleep(1.0)
            else:
                self.resumed = True
                self.note(f"api-{self.target.number} resumed during cleanup")
                return


def _preflight(
    descriptor: Descriptor, client: RenderClient, number: int, probe: Probe, flags: str = ""
) -> InstanceRef:
    target = descriptor.instance(number)
    if len(descriptor.instances) < 2:
        raise OperationFailed(
            "refusing the failover drill: it needs at least two instances, the deployment has one"
        )
    results = {i.number: probe(health_url(i.url)) for i in descriptor.instances}
    healthy = [n for n, r in results.items() if r.ok]
    if len(healthy) < 2 or number not in healthy:
        lines = [f"api-{n}: {r.detail}" for n, r in sorted(results.items())]
        why = (
            f"only {len(healthy)} of {len(results)} instances are healthy"
            if len(healthy) < 2
            else f"api-{number} is not healthy"
        )
        raise OperationFailed(f"refusing the failover drill: {why}", lines=lines)
    if client.get_service(target.service_id).is_suspended:
        raise OperationFailed(
            f"refusing the failover drill: api-{number} ({target.service_id}) is already suspended",
            lines=[resume_hint(number, target.name, flags)],
        )
    return target


def run_failover_drill(
    descriptor: Descriptor,
    client: RenderClient,
    *,
    instance: int = 1,
    duration: float = 10.0,
    rate: float = 200.0,
    start_traffic: StartTraffic,
    probe: Probe,
    sleep: Sleep = time.sleep,
    settle: float = 1.0,
    timing: OpsTiming | None = None,
    on_event: Callable[[str], None] | None = None,
    resume_flags: str = "",
    watch_interval: float = WATCH_INTERVAL_SECONDS,
) -> DrillReport:
    """Run the drill; preflight refusals raise, anything after traffic starts ends in a report.
    `resume_flags` name the deployment in the `resume` command suggested to the user."""
    guard = Guard(descriptor, client, probe, flags=resume_flags, interval=watch_interval)
    # Suspended or deploying instances first (K too): those refusals say how to bring them back.
    guard.require(f"suspend api-{instance}", exclude=None, health=False, strict=False)
    target = _preflight(descriptor, client, instance, probe, resume_flags)
    roles = instance_roles(descriptor)
    owner = find_owner(client, roles)
    started_at = wall_clock()
    traffic = start_traffic(descriptor.edge_url, rate)
    drill = _Drill(
        descriptor,
        client,
        target,
        traffic=traffic,
        probe=probe,
        sleep=sleep,
        on_event=on_event,
        guard=guard,
        timing=timing,
    )
    # While K is down, every wait of the drill also watches the others (see ops/guard.py).
    drill.sleep = guard.watching(
        sleep,
        clock=traffic.now,
        number=instance,
        active=lambda: drill.suspend_requested and not drill.resumed,
    )
    signals: list[int] = []
    try:
        ending = run_to_end(lambda: drill.run(duration=duration, settle=settle))
        if ending.outcome != "passed":
            drill.note(
                ending.outcome if ending.outcome == "interrupted" else f"stopped: {ending.error}"
            )
    finally:
        # Reached on every path, even an exception run_to_end does not turn into a verdict.
        with deferred_signals(signals):
            drill.sleep = sleep  # the cleanup must not abort on what the watch sees
            drill.ensure_resumed()
            totals = traffic.stop()
    if signals and ending.outcome == "passed":
        ending = Ending("interrupted", "interrupted", EXIT_INTERRUPTED)
    # The runbook's "no errors in logs during failover": every instance, the drill's window.
    logs = scan_errors(client, roles, owner=owner, start=started_at, end=wall_clock())
    return _report(drill, summarize(totals, drill.attribute), totals.samples, ending, logs)


def drill_failover(
    source: DeploymentSource,
    *,
    instance: int,
    duration: float,
    rate: float,
    timing_flags: TimingFlags,
    confirm: Confirm,
    on_event: Callable[[str], None],
) -> DrillReport:
    """The drill on the deployment `source` names, with its timings and the Render API, once
    `confirm` lets it go on; under the deployment lock, a SIGTERM stopping it as Ctrl-C does."""
    descriptor = source.descriptor()
    inst = descriptor.instance(instance)
    timing = timing_of(source, descriptor, timing_flags)
    client = source.client(descriptor, required="drill failover")
    # Closed however it ends, a declined confirmation included.
    with client:
        confirm(
            f"Suspend api-{instance} ({inst.name}) for {duration:g}s under {rate:g} req/s?",
            what=f"drill failover suspends api-{instance} ({inst.name})",
        )
        on_event(timing.summary())
        lock = deployment_lock(descriptor, f"drill failover --instance {instance}")
        with sigterm_as_interrupt(), lock:
            return run_failover_drill(
                descriptor,
                client,
                instance=instance,
                duration=duration,
                rate=rate,
                start_traffic=SteadyRun,
                probe=probe_health,
                on_event=on_event,
                resume_flags=source.flags,
                timing=timing,
            )


def _report(
    drill: _Drill,
    totals_summary: TrafficSummary,
    samples: Sequence[Sample],
    ending: Ending,
    logs: LogScan | None = None,
) -> DrillReport:
    k = drill.target.number
    timing = drill.timing
    t_s, t_d, t_r = drill.t_suspend, drill.t_drained, drill.t_resume
    suspended_s = _since(drill.t_suspended, t_s)
    drained_s: float | None = None
    if t_s is not None and t_d is not None:
        until = t_r if t_r is not None else float("inf")
        late = [s.started for s in samples if t_s <= s.started < until and drill.attribute(s) == k]
        drained_s = round(max(late) - t_s, 3) if late else 0.0
    rejoin_s = (
        round(drill.rejoin_sample.started - t_r, 3)
        if drill.rejoin_sample is not None and t_r is not None
        else None
    )
    baseline = [s for s in samples if t_s is None or s.started < t_s]
    during: list[Sample] = []
    if t_s is not None:
        end = t_r if t_r is not None else float("inf")
        during = [s for s in samples if t_s <= s.started < end]
    window: list[Sample] = (
        [s for s in during if t_d is not None and s.started >= t_d] if t_d is not None else []
    )
    by_k_while_suspended = sum(1 for s in window if drill.attribute(s) == k)
    checks = [
        *traffic_checks(totals_summary)[:1],
        Check(
            name=f"api-{k} suspended via the API",
            passed=drill.api_says_suspended,
            measured=(
                f"suspended {suspended_s:g} s after the call"
                if suspended_s is not None
                else {True: "suspended", False: "not suspended", None: "not reached"}[
                    drill.api_says_suspended
                ]
            ),
            threshold=f"suspended within {timing.suspend_timeout_seconds:g} s",
        ),
        Check(
            name=f"api-{k} stopped receiving traffic",
            passed=None if drained_s is None else True,
            measured="not reached" if drained_s is None else f"{drained_s:g} s after suspend",
        ),
        Check(
            name="all traffic served by the other instances while suspended",
            passed=None if t_d is None or t_r is None else by_k_while_suspended == 0,
            measured=f"{by_k_while_suspended} answers from api-{k}, {len(window)} in total",
            threshold=f"0 from api-{k}",
        ),
        Check(
            name=f"api-{k} resumed",
            passed=drill.resumed,
            measured="resumed" if drill.resumed else "NOT resumed: resume it by hand",
        ),
        Check(
            name=f"api-{k} healthy and receiving traffic again",
            passed=None
            if rejoin_s is None and ending.outcome == "interrupted"
            else rejoin_s is not None,
            measured="not observed" if rejoin_s is None else f"{rejoin_s:g} s after resume",
            # The deadlines come from the target (Render's or the sandbox's timing): a rejoin
            # is late only past them, and each wait raised if it passed its own.
            threshold=f"within the {timing.target} deadlines ({_resume_budget(timing):g} s)",
        ),
        traffic_checks(totals_summary)[1],
    ]
    if logs is not None:
        checks.insert(-1, log_check(LOG_CHECK, logs))
    ending.judge(checks)
    return DrillReport(
        **totals_summary.model_dump(),
        outcome=ending.outcome,
        error=ending.error,
        exit_code=ending.exit_code,
        instance=k,
        service=drill.target.name,
        service_id=drill.target.service_id,
        suspended=drill.t_suspend is not None,
        resumed=drill.resumed,
        seconds_until_drained=drained_s,
        seconds_to_rejoin=rejoin_s,
        seconds_to_suspended=suspended_s,
        resume_deploy=drill.resume_deploy.id if drill.resume_deploy is not None else None,
        seconds_to_resume_live=_since(drill.t_resume_live, t_r),
        seconds_to_healthy=_since(drill.t_healthy, t_r),
        timing=timing.to_json(),
        baseline_p95_latency_ms=_p95(baseline),
        suspended_p95_latency_ms=_p95(during),
        served_by_while_suspended=served_by(window, drill.attribute),
        checks=checks,
        timeline=drill.timeline,
        logs=logs,
    )


def _since(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else round(later - earlier, 3)


def _resume_budget(timing: OpsTiming) -> float:
    """The longest a resume may take to serve through the edge again on this target."""
    deploy = (
        timing.deploy_appear_timeout_seconds + timing.deploy_timeout_seconds
        if timing.resume_creates_deploy
        else 0.0
    )
    return round(deploy + timing.healthy_timeout_seconds + timing.rejoin_timeout_seconds, 1)


def _p95(samples: Sequence[Sample]) -> float | None:
    p95 = latency_summary(samples).p95_ms
    return None if p95 is None else round(p95, 1)
