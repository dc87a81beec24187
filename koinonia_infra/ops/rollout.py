"""`rollout`: the runbook's zero-downtime redeploy, one instance at a time, health-gated.

For each instance in order: trigger a deploy, wait for `live`, wait for its /health and for the edge
to route to it again, then the next. The first failure stops the rollout; the instances after it are
left untouched. Steady traffic through the edge is measured throughout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import OperationFailed, UsageError
from koinonia_infra.measure.attribution import Attributor, first_served_after
from koinonia_infra.measure.health import Probe, health_url, probe_health
from koinonia_infra.measure.poll import Sleep, wait_healthy, wait_until
from koinonia_infra.ops.common import (
    Check,
    Confirm,
    Outcome,
    ReportModel,
    StartTraffic,
    SteadyRun,
    TrafficRun,
    TrafficSummary,
    run_to_end,
    sigterm_as_interrupt,
    summarize,
    traffic_checks,
)
from koinonia_infra.ops.guard import Guard, deployment_lock
from koinonia_infra.ops.logs import LogScan, find_owner, instance_roles, log_check, scan_errors
from koinonia_infra.ops.logs import now as wall_clock
from koinonia_infra.ops.timing import OpsTiming, TimingFlags, timing_for, timing_of
from koinonia_infra.render_api import Deploy, RenderClient

if TYPE_CHECKING:
    from koinonia_infra.targets import DeploymentSource

StepOutcome = Literal["done", "failed", "interrupted", "untouched"]


class RolloutStep(ReportModel):
    instance: int
    service: str
    service_id: str
    outcome: StepOutcome = "untouched"
    previous_deploy: str | None = None
    deploy: str | None = None
    deploy_status: str | None = None
    seconds_to_live: float | None = None
    seconds_to_healthy: float | None = None
    seconds_to_rejoin: float | None = None
    # From live until the previous instance's overlap and shutdown delay were over.
    seconds_handover: float | None = None
    detail: str | None = None


class RolloutReport(TrafficSummary):
    kind: Literal["rollout"] = "rollout"
    outcome: Outcome
    error: str | None = None
    order: list[int]
    steps: list[RolloutStep]
    checks: list[Check]
    exit_code: int = 0
    # The deadlines the rollout waited with, and which target's timings they are.
    timing: dict[str, Any] = Field(default_factory=dict)
    # The instances' error-level log lines over the rollout's window (Render's /logs).
    logs: LogScan | None = None


LOG_CHECK = "no errors in the instances' logs during the rollout"


def parse_order(text: str | None, descriptor: Descriptor) -> list[int]:
    """`--order 2,1`; default: highest number first (the runbook redeploys instance 2 first)."""
    if text is None:
        return sorted((i.number for i in descriptor.instances), reverse=True)
    try:
        order = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--order {text!r}: expected instance numbers like 2,1") from None
    if len(set(order)) != len(order) or not order:
        raise UsageError(f"--order {text!r}: each instance once")
    for number in order:
        descriptor.instance(number)
    return order


def _preflight(descriptor: Descriptor, probe: Probe) -> None:
    results = {i.number: probe(health_url(i.url)) for i in descriptor.instances}
    unhealthy = {n: r for n, r in results.items() if not r.ok}
    if unhealthy:
        # Redeploying while another instance is down would leave nobody to serve.
        raise OperationFailed(
            f"refusing the rollout: {len(unhealthy)} of {len(results)} instances are not healthy",
            lines=[f"api-{n}: {r.detail}" for n, r in sorted(unhealthy.items())],
        )


class _Rollout:
    def __init__(
        self,
        descriptor: Descriptor,
        client: RenderClient,
        *,
        traffic: TrafficRun,
        probe: Probe,
        sleep: Sleep,
        timing: OpsTiming,
        refresh: Callable[[], Descriptor] | None,
        say: Callable[[str], None],
    ) -> None:
        self.descriptor = descriptor
        self.client = client
        self.traffic = traffic
        self.probe = probe
        self.sleep = sleep
        self.timing = timing
        self.deploy_timeout = timing.deploy_timeout_seconds
        self.rejoin_timeout = timing.rejoin_timeout_seconds
        self.refresh = refresh
        self.say = say
        self.attribute = Attributor(descriptor)
        self.current: RolloutStep | None = None
        # How a step's deploy starts; default: trigger one (see run_rollout's `trigger`).
        self.trigger: Callable[[RolloutStep], Deploy] | None = None
        self.guard: Guard | None = None

    def redeploy(self, step: RolloutStep) -> None:
        """Deploy one instance and wait until the edge routes to it again; raise on failure."""
        n, sid, clock = step.instance, step.service_id, self.traffic.now
        where = f"api-{n} ({step.service})"
        if self.guard is not None:
            # Right before each deploy: a drill or an operator may have taken another instance
            # down since the preflight (see ops/guard.py).
            self.guard.descriptor = self.descriptor
            self.guard.require(f"deploy api-{n}", exclude=n)
        t0 = clock()
        deploy = self.trigger(step) if self.trigger is not None else self.client.trigger_deploy(sid)
        if deploy.id == step.previous_deploy:
            deploy = self.await_new_deploy(step)
        step.deploy, step.deploy_status = deploy.id, deploy.status
        self.say(f"api-{n}: deploy {deploy.id} triggered")

        def seen(d: Deploy) -> None:
            step.deploy_status = d.status

        try:
            done = self.client.wait_for_deploy(
                sid, deploy.id, timeout=self.deploy_timeout, on_poll=seen
            )
        except OperationFailed as exc:
            raise OperationFailed(f"rollout stopped: {where}: {exc.message}") from None
        step.deploy_status = done.status
        if not done.succeeded:
            raise OperationFailed(f"rollout stopped: {where} deploy {done.id} ended {done.status}")
        t_live = clock()
        step.seconds_to_live = round(t_live - t0, 2)
        self.say(f"api-{n}: deploy {done.id} live after {step.seconds_to_live:g}s")
        if self.refresh is not None:
            # A redeployed instance may answer on a new address (the sandbox's do).
            self.descriptor = self.refresh()
            self.attribute.update(self.descriptor)
        target = self.descriptor.instance(n)
        timing = self.timing
        health = wait_healthy(
            self.probe,
            health_url(target.url),
            timeout=timing.healthy_timeout_seconds,
            clock=clock,
            sleep=self.sleep,
        )
        if not health.ok:
            raise OperationFailed(
                f"rollout stopped: {where} not healthy {timing.healthy_timeout_seconds:g}s after "
                f"its deploy went live ({timing.target} timing): {health.detail}"
            )
        step.seconds_to_healthy = round(clock() - t_live, 2)

        def rejoined() -> bool:
            samples = self.traffic.samples()
            return first_served_after(samples, self.attribute, n, t_live) is not None

        if not wait_until(
            rejoined, timeout=self.rejoin_timeout, clock=clock, sleep=self.sleep, interval=0.1
        ):
            raise OperationFailed(
                f"rollout stopped: the edge did not route to {where} within "
                f"{self.rejoin_timeout:g}s of its new deploy ({timing.target} timing)"
            )
        step.seconds_to_rejoin = round(clock() - t_live, 2)
        step.outcome = "done"
        self.say(f"api-{n}: serving again after {step.seconds_to_rejoin:g}s")
        self.hold_handover(step, t_live)

    def hold_handover(self, step: RolloutStep, t_live: float) -> None:
        """Keep measuring until the previous instance of this service is certainly gone.

        A zero-downtime deploy keeps the old instance serving for an overlap after the new one
        is live, then sends SIGTERM and allows the shutdown delay (ops/timing.py). Touching the
        next instance before that would put two instances in a switch at once."""
        clock, window = self.traffic.now, self.timing.handover_seconds
        if window <= 0:
            return
        self.say(
            f"api-{step.instance}: holding {window:g}s after live for the old instance to "
            f"leave ({self.timing.overlap_seconds:g}s overlap + "
            f"{self.timing.shutdown_delay_seconds:g}s shutdown delay)"
        )
        until = t_live + window
        while clock() < until:
            self.sleep(min(self.timing.poll_interval_seconds, until - clock()))
        step.seconds_handover = round(clock() - t_live, 2)

    def await_new_deploy(self, step: RolloutStep) -> Deploy:
        """A 202 "queued" carries no deploy, and the newest listed may still be the previous
        one: wait for the new one to be listed (render-oss/cli `WaitForDeployCreate`)."""
        timing, found = self.timing, None

        def listed() -> bool:
            nonlocal found
            latest = self.client.latest_deploy(step.service_id)
            if latest is not None and latest.id != step.previous_deploy:
                found = latest
            return found is not None

        if not wait_until(
            listed,
            timeout=timing.deploy_appear_timeout_seconds,
            clock=self.traffic.now,
            sleep=self.sleep,
            interval=timing.poll_interval_seconds,
        ):
            raise OperationFailed(
                f"rollout stopped: no new deploy of api-{step.instance} ({step.service}) was "
                f"listed within {timing.deploy_appear_timeout_seconds:g}s of the trigger"
            )
        assert found is not None
        return found


def run_rollout(
    descriptor: Descriptor,
    client: RenderClient,
    *,
    order: Sequence[int],
    start_traffic: StartTraffic,
    probe: Probe,
    rate: float = 200.0,
    timing: OpsTiming | None = None,
    deploy_timeout: float | None = None,
    rejoin_timeout: float | None = None,
    settle: float = 1.0,
    sleep: Sleep = time.sleep,
    refresh: Callable[[], Descriptor] | None = None,
    on_event: Callable[[str], None] | None = None,
    trigger: Callable[[RolloutStep], Deploy] | None = None,
    resume_flags: str = "",
) -> RolloutReport:
    """Preflight refusals raise; once traffic has started every path ends in a report.
    `resume_flags` name the deployment in the `resume` command suggested to the user."""
    guard = Guard(descriptor, client, probe, flags=resume_flags)
    # Suspended or deploying instances first: those refusals say how to bring them back.
    guard.require("roll out", exclude=None, health=False, strict=False)
    _preflight(descriptor, probe)
    steps = [
        RolloutStep(
            instance=n,
            service=descriptor.instance(n).name,
            service_id=descriptor.instance(n).service_id,
        )
        for n in order
    ]
    for step in steps:
        latest = client.latest_deploy(step.service_id)
        step.previous_deploy = latest.id if latest else None
    # The target's deadlines (ops/timing.py); explicit timeouts win.
    chosen = (timing or timing_for(descriptor)).with_overrides(
        deploy_timeout=deploy_timeout, rejoin_timeout=rejoin_timeout
    )
    roles = instance_roles(descriptor)
    owner = find_owner(client, roles)
    started_at = wall_clock()
    traffic = start_traffic(descriptor.edge_url, rate)
    rollout = _Rollout(
        descriptor,
        client,
        traffic=traffic,
        probe=probe,
        sleep=sleep,
        timing=chosen,
        refresh=refresh,
        say=on_event or (lambda _msg: None),
    )
    # `up` applies an env change to one instance, which deploys it, instead of a bare deploy.
    rollout.trigger = trigger
    rollout.guard = guard

    def run() -> None:
        sleep(settle)
        for step in steps:
            rollout.current = step
            rollout.redeploy(step)
        sleep(settle)

    try:
        ending = run_to_end(run)
    finally:
        totals = traffic.stop()
    logs = scan_errors(client, roles, owner=owner, start=started_at, end=wall_clock())
    current = rollout.current
    if current is not None and current.outcome == "untouched" and ending.outcome != "passed":
        current.outcome = "interrupted" if ending.outcome == "interrupted" else "failed"
        current.detail = ending.error
    summary = summarize(totals, rollout.attribute)
    on_new = [s for s in steps if s.outcome == "done" and s.deploy != s.previous_deploy]
    rate_check = traffic_checks(summary)
    checks = [
        rate_check[0],
        Check(
            name="every instance on a new deploy",
            passed=len(on_new) == len(steps),
            measured=f"{len(on_new)} of {len(steps)}",
            threshold=f"{len(steps)} of {len(steps)}",
        ),
        log_check(LOG_CHECK, logs),
        rate_check[1],
    ]
    ending.judge(checks)
    return RolloutReport(
        **summary.model_dump(),
        outcome=ending.outcome,
        error=ending.error,
        exit_code=ending.exit_code,
        order=list(order),
        steps=steps,
        checks=checks,
        timing=chosen.to_json(),
        logs=logs,
    )


def rollout_deployment(
    source: DeploymentSource,
    *,
    order: str | None,
    rate: float,
    timing_flags: TimingFlags,
    confirm: Confirm,
    on_event: Callable[[str], None],
) -> RolloutReport:
    """The rollout of the deployment `source` names (`order` as `--order` gives it), with its
    timings and the Render API, once `confirm` lets it go on; under the deployment lock, a
    SIGTERM stopping it as Ctrl-C does."""
    descriptor = source.descriptor()
    sequence = parse_order(order, descriptor)
    timing = timing_of(source, descriptor, timing_flags)
    client = source.client(descriptor, required="rollout")
    names = ", ".join(f"api-{n}" for n in sequence)
    # A file or the sandbox's descriptor is read again after each deploy (a redeployed sandbox
    # instance answers on a new address); a stack's outputs change only with `up`.
    refresh = source.descriptor if source.from_stack is None else None
    # Closed however it ends, a declined confirmation included.
    with client:
        confirm(
            f"Redeploy {names} one at a time under {rate:g} req/s?",
            what=f"rollout redeploys {names}",
        )
        on_event(timing.summary())
        with sigterm_as_interrupt(), deployment_lock(descriptor, "rollout"):
            return run_rollout(
                descriptor,
                client,
                order=sequence,
                start_traffic=SteadyRun,
                probe=probe_health,
                rate=rate,
                timing=timing,
                on_event=on_event,
                refresh=refresh,
                resume_flags=source.flags,
            )
