"""Env changes of running instances, applied one instance at a time (see the note below)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from koinonia_infra.deploy.types import (
    API_ENV_NAME,
    API_SERVICE_NAME,
    DEFAULT_DEPLOY_TIMEOUT,
    DEPLOY_GRACE,
    ENV_VARS,
    REPLACE_OPS,
    WEB_SERVICE,
    ApplyEnv,
    ChangePlan,
    DeployOutcome,
    EnvRollout,
    Seams,
    Step,
)
from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import (
    EnvironmentProblem,
    Interrupted,
    KoinoniaError,
    OperationFailed,
    StackLocked,
    UsageError,
)
from koinonia_infra.measure.poll import poll

if TYPE_CHECKING:
    from koinonia_infra.deploy.types import Engine
    from koinonia_infra.measure.health import Probe
    from koinonia_infra.measure.poll import Sleep
    from koinonia_infra.ops.common import StartTraffic
    from koinonia_infra.render_api import Deploy, RenderClient


# ------------------------------------------------------------------------------------------
# Env changes: one instance at a time
# ------------------------------------------------------------------------------------------
#
# pulumi-render answers every UPDATE of an EnvVarsForService with `POST /services/{id}/deploys`
# and does not wait for it (cloudy-sky-software/pulumi-render,
# provider/pkg/provider/provider.go, OnPostUpdate). The engine updates independent resources in
# parallel, so one env change would redeploy every instance at once; chaining the env resources
# with depends_on would not help, as each step ends when the PUT returns, long before its deploy
# is live. So `up` leaves the API instances' env changes out of the main update (`--exclude`: an
# excluded resource gets a `same` step, pulumi/pulumi pkg/resource/deploy/step_generator.go),
# then applies them one instance at a time with a targeted update (`--target`), each followed by
# the provider's deploy, `live`, the instance's /health and the edge routing to it again
# (ops/rollout.py, the same loop as `rollout`) before the next instance is touched. Creating an
# env resource PUTs without deploying (OnPostCreate), so an existing (adopted) service getting
# its first env resource is deployed by the rollout itself.


def env_changes(plan: ChangePlan) -> dict[int, Step]:
    """Instance number → its env step, for each RUNNING instance whose environment this update
    changes. New or replaced services are left out: they are created with their environment
    (program/api.py), so their first deploy already has it."""
    service_ops = {
        int(match.group(1)): step.op
        for step in plan.steps
        if step.type == WEB_SERVICE and (match := API_SERVICE_NAME.match(step.name))
    }
    found: dict[int, Step] = {}
    for step in plan.changes:
        match = API_ENV_NAME.match(step.name)
        if step.type != ENV_VARS or match is None or step.op not in ("update", "create"):
            continue
        number = int(match.group(1))
        service_op = service_ops.get(number, "same")
        if service_op == "create" or service_op in REPLACE_OPS:
            continue
        found[number] = step
    return found


def _another_deploy(
    client: RenderClient,
    service_id: str,
    previous: str | None,
    *,
    grace: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Deploy | None:
    """The deploy listed after `previous` (the provider's), polling up to `grace` seconds: Render
    may list a new deploy a little late. Ids, not timestamps: no clock skew to allow for."""
    latest = poll(
        lambda: client.latest_deploy(service_id),
        lambda found: found is not None and found.id != previous,
        deadline=clock() + grace,
        clock=clock,
        sleep=sleep,
        interval=0.5,
        max_interval=5.0,
    )
    return latest if latest is not None and latest.id != previous else None


_EXIT_ERRORS: dict[int, type[KoinoniaError]] = {
    Interrupted.exit_code: Interrupted,
    StackLocked.exit_code: StackLocked,
    EnvironmentProblem.exit_code: EnvironmentProblem,
    UsageError.exit_code: UsageError,
}


def roll_env_changes(
    descriptor: Descriptor,
    order: Sequence[int],
    apply: ApplyEnv,
    provider_deploys: Mapping[int, bool],
    *,
    client: RenderClient,
    start_traffic: StartTraffic,
    probe: Probe,
    sleep: Sleep | None = None,
    clock: Callable[[], float] | None = None,
    deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT,
    grace: float = DEPLOY_GRACE,
    on_event: Callable[[str], None] | None = None,
) -> EnvRollout:
    """The real `EnvRoller`: ops/rollout.py's health-gated loop, where each instance's deploy is
    started by applying its env change (the provider's deploy), or triggered when applying it
    deploys nothing (a create) or the provider's trigger failed (it only logs a warning then)."""
    import time

    from koinonia_infra.ops.rollout import RolloutStep, run_rollout

    pause = sleep or time.sleep
    now = clock or time.monotonic

    def trigger(step: RolloutStep) -> Deploy:
        before = client.latest_deploy(step.service_id)
        apply(step.instance)
        if provider_deploys.get(step.instance, False):
            found = _another_deploy(
                client,
                step.service_id,
                before.id if before else None,
                grace=grace,
                clock=now,
                sleep=pause,
            )
            if found is not None:
                return found
        return client.trigger_deploy(step.service_id)

    report = run_rollout(
        descriptor,
        client,
        order=order,
        start_traffic=start_traffic,
        probe=probe,
        sleep=pause,
        deploy_timeout=deploy_timeout,
        on_event=on_event,
        trigger=trigger,
    )
    deploys = [
        DeployOutcome(s.service, s.service_id, s.deploy_status or "unknown", s.deploy)
        for s in report.steps
        if s.deploy is not None
    ]
    if report.outcome == "passed":
        return EnvRollout(True, None, deploys)
    untouched = [f"api-{s.instance}" for s in report.steps if s.outcome == "untouched"]
    error = report.error or f"env rollout {report.outcome}"
    if untouched:
        error += f"; {', '.join(untouched)} keep(s) the previous environment"
    return EnvRollout(False, error, deploys, exit_code=report.exit_code)


def roll_env(
    engine: Engine, seams: Seams, descriptor: Descriptor, changes: Mapping[int, Step]
) -> list[DeployOutcome]:
    """Apply the held-back env changes one instance at a time; fail naming the instance."""
    ui, roller = seams.ui, seams.roll_env
    assert roller is not None
    # The runbook's order (ops/rollout.py parse_order): highest instance number first.
    order = sorted(changes, reverse=True)
    ui.message(
        "info",
        "applying env changes one instance at a time: " + ", ".join(f"api-{n}" for n in order),
    )

    def apply(number: int) -> None:
        ui.message("info", f"api-{number}: applying its env change ({changes[number].name})")
        with ui.progress("update") as on_event:
            engine.up(on_event=on_event, target=[changes[number].urn])

    outcome = roller(
        descriptor, order, apply, {n: step.op == "update" for n, step in changes.items()}
    )
    for deploy in outcome.deploys:
        ui.message("success" if deploy.ok else "error", deploy.describe())
    if not outcome.ok:
        error_type = _EXIT_ERRORS.get(outcome.exit_code, OperationFailed)
        raise error_type(outcome.error or "the env rollout failed")
    return outcome.deploys
