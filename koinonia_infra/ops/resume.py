"""`resume N`: bring back an instance a drill left suspended (killed, power loss) and wait until
it serves again. The only other way back is a hand-made API call or the dashboard.

It takes no deployment lock on purpose: resuming only ever adds capacity, and it must work while
a hung drill still holds the lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import EXIT_FAILED, EXIT_OK
from koinonia_infra.measure.health import Probe, health_url, probe_health
from koinonia_infra.measure.poll import Sleep, wait_healthy
from koinonia_infra.ops.common import ReportModel
from koinonia_infra.ops.timing import timing_of
from koinonia_infra.render_api import RenderClient

if TYPE_CHECKING:
    from koinonia_infra.targets import DeploymentSource


class ResumeReport(ReportModel):
    kind: Literal["resume"] = "resume"
    outcome: Literal["passed", "failed"]
    error: str | None = None
    exit_code: int = EXIT_OK
    instance: int
    service: str
    service_id: str
    was_suspended: bool
    resume_requested: bool
    healthy: bool
    health: str
    seconds_to_healthy: float | None
    # The deploy Render starts on a resume (trigger `service_resumed`), followed to its end.
    deploy: str | None = None
    deploy_status: str | None = None


def run_resume(
    descriptor: Descriptor,
    client: RenderClient,
    number: int,
    *,
    probe: Probe,
    timeout: float = 120.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = time.sleep,
    on_event: Callable[[str], None] | None = None,
) -> ResumeReport:
    """Resume instance `number` if the API says it is suspended, then wait for its /health.
    An instance that is not suspended is only checked: `resume` is safe to run twice."""
    say = on_event or (lambda _msg: None)
    inst = descriptor.instance(number)
    where = f"api-{number} ({inst.name})"
    was_suspended = client.get_service(inst.service_id).is_suspended
    t0 = clock()
    if was_suspended:
        client.resume(inst.service_id)
        say(f"resume {where} requested")
    else:
        say(f"{where} is not suspended; checking its /health")
    # The API accepting the resume says nothing about serving: /health does.
    health = wait_healthy(probe, health_url(inst.url), timeout=timeout, clock=clock, sleep=sleep)
    elapsed = round(clock() - t0, 2)
    error = None if health.ok else f"{where} not healthy {timeout:g}s after resume: {health.detail}"
    # On Render a resume is a deploy (the deploy schema's `trigger` enum has `service_resumed`,
    # render-openapi.json in cloudy-sky-software/pulumi-render); until it ends the instance counts
    # as deploying, and the next drill or rollout would be refused.
    deploy = client.latest_deploy(inst.service_id) if health.ok else None
    if deploy is not None and deploy.in_progress:
        say(f"{where}: following deploy {deploy.id} ({deploy.status})")
        deploy = client.wait_for_deploy(
            inst.service_id, deploy.id, timeout=max(1.0, t0 + timeout - clock())
        )
        if not deploy.succeeded:
            error = f"{where}: deploy {deploy.id} ended {deploy.status}"
    ok = error is None
    if ok:
        say(f"{where} healthy after {elapsed:g}s")
    return ResumeReport(
        outcome="passed" if ok else "failed",
        error=error,
        exit_code=EXIT_OK if ok else EXIT_FAILED,
        instance=number,
        service=inst.name,
        service_id=inst.service_id,
        was_suspended=was_suspended,
        resume_requested=was_suspended,
        healthy=health.ok,
        health=health.detail,
        seconds_to_healthy=elapsed if health.ok else None,
        deploy=deploy.id if deploy is not None else None,
        deploy_status=deploy.status if deploy is not None else None,
    )


def resume_instance(
    source: DeploymentSource,
    number: int,
    *,
    timeout: float | None,
    on_event: Callable[[str], None],
) -> ResumeReport:
    """`run_resume` on the deployment `source` names; no `timeout` means as long as a resume
    takes on its target (ops/timing.py)."""
    descriptor = source.descriptor()
    descriptor.instance(number)  # an undeclared N is refused before the timings and the key
    if timeout is None:
        timeout = timing_of(source, descriptor).resume_timeout_seconds
    with source.client(descriptor, required="resume") as client:
        return run_resume(
            descriptor, client, number, probe=probe_health, timeout=timeout, on_event=on_event
        )
