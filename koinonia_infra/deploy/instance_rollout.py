"""Changes that redeploy a running instance, applied one instance at a time (see the note below)."""

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
    ApplyInstance,
    ChangePlan,
    DeployOutcome,
    InstanceRollout,
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
# Changes that redeploy a running instance: one instance at a time
# ------------------------------------------------------------------------------------------
#
# pulumi-render answers every UPDATE of a WebService (a PATCH of its settings: plan, commands,
# health check path, ...) and of an EnvVarsForService (a PUT of its env) with
# `POST /services/{id}/deploys`, sent before the step ends but not waited for
# (cloudy-sky-software/pulumi-render, provider/pkg/provider/provider.go, OnPostUpdate). The
# engine updates independent resources in parallel, so one such change would redeploy every
# instance at once; chaining the resources with depends_on would not help, as each step ends
# long before its deploy is live. So `up` leaves these changes of the running API instances out
# of the main update (`--exclude`: an excluded resource gets a `same` step, pulumi/pulumi
# pkg/resource/deploy/step_generator.go), then applies them one instance at a time with a
# targeted update (`--target` with that instance's service and env URNs), each followed by the
# provider's deploy, `live`, the instance's /health and the edge routing to it again
# (ops/rollout.py, the same loop as `rollout`) before the next instance is touched. When both the
# service and its env change, the provider starts two deploys; the env's comes second (the env
# resource takes `service_id=service.id`, program/api.py, so the engine updates it after the
# service) and carries both changes: the newest deploy is the one followed. Creating an env
# resource PUTs without deploying (OnPostCreate), so an existing (adopted) service getting its
# first env resource is deployed by the rollout itself.


def instance_changes(plan: ChangePlan) -> dict[int, list[Step]]:
    """Instance number → the steps of this update that redeploy it, for each RUNNING instance:
    an update of its service's settings, an update or create of its env resource. New or
    replaced services are left out: they are created with their settings and environment
    (program/api.py), so their first deploy already has them."""
    service_ops = {
        int(match.group(1)): step.op
        for step in plan.steps
        if step.type == WEB_SERVICE and (match := API_SERVICE_NAME.match(step.name))
    }
    found: dict[int, list[Step]] = {}
    for step in plan.changes:
        if step.type == WEB_SERVICE and step.op == "update":
            match = API_SERVICE_NAME.match(step.name)
        elif step.type == ENV_VARS and step.op in ("update", "create"):
            match = API_ENV_NAME.match(step.name)
        else:
            continue
        if match is None:
            continue
        number = int(match.group(1))
        service_op = service_ops.get(number, "same")
        if service_op == "create" or service_op in REPLACE_OPS:
            continue
        found.setdefault(number, []).append(step)
    return found


def provider_deploys(steps: Sequence[Step]) -> int:
    """How many deploys the provider starts when `steps` are applied: one per update
    (OnPostUpdate), none for a create (OnPostCreate)."""
    return sum(1 for step in steps if step.op == "update")


def _provider_deploy(
    client: RenderClient,
    service_id: str,
    before: set[str],
    expected: int,
    *,
    grace: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Deploy | None:
    """The newest deploy listed since `before` (the ids listed before the update), polling up to
    `grace` seconds until the `expected` deploys the provider started are all listed: Render may
    list a new deploy a little late, and of two the newer carries both changes. Ids, not
    timestamps: no clock skew to allow for."""
    listed = poll(
        lambda: [d for d in client.list_deploys(service_id, limit=10) if d.id not in before],
        lambda new: len(new) >= expected,
        deadline=clock() + grace,
        clock=clock,
        sleep=sleep,
        interval=0.5,
        max_interval=5.0,
    )
    # Render lists deploys newest first.
    return listed[0] if listed else None


_EXIT_ERRORS: dict[int, type[KoinoniaError]] = {
    Interrupted.exit_code: Interrupted,
    StackLocked.exit_code: StackLocked,
    EnvironmentProblem.exit_code: EnvironmentProblem,
    UsageError.exit_code: UsageError,
}


def roll_instance_changes(
    descriptor: Descriptor,
    order: Sequence[int],
    apply: ApplyInstance,
    provider_deploys: Mapping[int, int],
    *,
    client: RenderClient,
    start_traffic: StartTraffic,
    probe: Probe,
    sleep: Sleep | None = None,
    clock: Callable[[], float] | None = None,
    deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT,
    grace: float = DEPLOY_GRACE,
    on_event: Callable[[str], None] | None = None,
) -> InstanceRollout:
    """The real `InstanceRoller`: ops/rollout.py's health-gated loop, where each instance's deploy
    is started by applying its changes (the provider's deploy), or triggered when applying them
    deploys nothing (an env create) or the provider's trigger failed (it only logs a warning
    then)."""
    import time

    from koinonia_infra.ops.rollout import RolloutStep, run_rollout

    pause = sleep or time.sleep
    now = clock or time.monotonic

    def trigger(step: RolloutStep) -> Deploy:
        before = {d.id for d in client.list_deploys(step.service_id, limit=10)}
        apply(step.instance)
        expected = provider_deploys.get(step.instance, 0)
        if expected:
            found = _provider_deploy(
                client, step.service_id, before, expected, grace=grace, clock=now, sleep=pause
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
        return InstanceRollout(True, None, deploys)
    untouched = [f"api-{s.instance}" for s in report.steps if s.outcome == "untouched"]
    error = report.error or f"instance rollout {report.outcome}"
    if untouched:
        error += f"; {', '.join(untouched)} keep(s) the previous settings and environment"
    return InstanceRollout(False, error, deploys, exit_code=report.exit_code)


def roll_instances(
    engine: Engine, seams: Seams, descriptor: Descriptor, changes: Mapping[int, Sequence[Step]]
) -> list[DeployOutcome]:
    """Apply the held-back changes one instance at a time; fail naming the instance."""
    ui, roller = seams.ui, seams.roll_instances
    assert roller is not None
    # The runbook's order (ops/rollout.py parse_order): highest instance number first.
    order = sorted(changes, reverse=True)
    ui.message(
        "info",
        "applying the instances' changes one instance at a time: "
        + ", ".join(f"api-{n}" for n in order),
    )

    def apply(number: int) -> None:
        names = ", ".join(step.name for step in changes[number])
        ui.message("info", f"api-{number}: applying its changes ({names})")
        with ui.progress("update") as on_event:
            engine.up(on_event=on_event, target=[step.urn for step in changes[number]])

    outcome = roller(
        descriptor, order, apply, {n: provider_deploys(steps) for n, steps in changes.items()}
    )
    for deploy in outcome.deploys:
        ui.message("success" if deploy.ok else "error", deploy.describe())
    if not outcome.ok:
        error_type = _EXIT_ERRORS.get(outcome.exit_code, OperationFailed)
        raise error_type(outcome.error or "the instance rollout failed")
    return outcome.deploys
