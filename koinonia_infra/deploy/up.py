"""`preview` and `up`: show the plan, refuse data or instance loss, confirm, update, wait for the
deploys, roll the running instances' changes one instance at a time, then verify. Free of engine
details: the engine is the `Engine` protocol, the user a `DeployUI`, Render and the deployment
small callables in `Seams`, so every decision is tested with fakes at those seams.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from koinonia_infra.deploy.deploys import await_deploys
from koinonia_infra.deploy.instance_rollout import instance_changes, roll_instances
from koinonia_infra.deploy.types import ChangePlan, DeployUI, Seams, UpReport, VerifyOutcome
from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import (
    OperationFailed,
    UsageError,
)

if TYPE_CHECKING:
    from koinonia_infra.deploy.types import Engine
    from koinonia_infra.ops.logs import LogScan
    from koinonia_infra.settings import Settings


def adopted_names(settings: Settings | None) -> frozenset[str]:
    """The logical names of what the stack adopted, from its import ids."""
    if settings is None:
        return frozenset()
    names = {f"api-{n}" for n in settings.api.import_ids} | {
        f"api-{n}-env" for n in settings.api.import_ids
    }
    if settings.postgres.import_id:
        names.add("postgres")
    if settings.key_value.import_id:
        names.add("key-value")
    return frozenset(names)


def run_preview(
    engine: Engine,
    ui: DeployUI,
    *,
    diff: bool = False,
    adopted: frozenset[str] = frozenset(),
    refresh: bool = False,
) -> ChangePlan:
    with ui.progress("preview") as on_event:
        # `refresh` passed only when asked: engines without it (test fakes) keep working.
        if refresh:
            plan = engine.preview(on_event=on_event, diff=diff, refresh=True)
        else:
            plan = engine.preview(on_event=on_event, diff=diff)
    plan.adopted = adopted
    if refresh:
        from koinonia_infra.adopt.drift import filter_refresh_noise

        filtered = filter_refresh_noise(plan)
        plan = filtered.plan
        if filtered.noise:
            ui.message(
                "info",
                "not counted: the provider's known refresh noise on "
                + ", ".join(filtered.noise)
                + " (serviceDetails fields Render returns and the program never declares; "
                "see docs/adopt.md)",
            )
    ui.show_plan(plan)
    return plan


def require_confirmation(ui: DeployUI, *, yes: bool, what: str) -> None:
    """--yes, or an interactive "yes"; without a terminal and without --yes, refuse."""
    if yes:
        return
    if not ui.interactive:
        raise UsageError(f"refusing to {what} without confirmation: no terminal; pass --yes")
    if not ui.confirm(f"Do you want to {what}?"):
        raise OperationFailed(f"cancelled: did not {what}; nothing was changed")


def refuse_data_loss(plan: ChangePlan, *, allow: bool) -> None:
    steps = plan.data_loss
    if not steps or allow:
        return
    raise UsageError(
        f"refusing to {steps[0].op} datastore {steps[0].name}: it holds production data; "
        "fix the settings, or pass --allow-data-loss if this is really intended",
        lines=[f"{s.op} {s.type} {s.name}: {s.reason() or 'no reason given'}" for s in steps[1:]],
    )


def refuse_instance_loss(plan: ChangePlan, *, allow: bool) -> None:
    """As refuse_data_loss, for the API instances: a replaced instance gets a new id and URL
    and serves nothing until its first deploy is live. Removing one on purpose is
    `destroy-instance N`, which does not pass here."""
    steps = plan.instance_loss
    if not steps or allow:
        return
    raise UsageError(
        f"refusing to {steps[0].op} live API instance {steps[0].name}: it would get a new id "
        "and URL (downtime); fix the settings, use `destroy-instance N` to remove an instance, "
        "or pass --allow-instance-replacement if this is really intended",
        lines=[f"{s.op} {s.type} {s.name}: {s.reason() or 'no reason given'}" for s in steps[1:]],
    )


def run_up(
    engine: Engine,
    seams: Seams,
    *,
    yes: bool = False,
    allow_data_loss: bool = False,
    allow_instance_replacement: bool = False,
    skip_verify: bool = False,
) -> UpReport:
    """preview → plan → confirm → update → wait for deploys → verify."""
    ui = seams.ui
    plan = run_preview(engine, ui, adopted=seams.adopted)
    report = UpReport(plan=plan, updated=False)
    if plan.policy_violations:
        raise OperationFailed(
            f"policy violations in stack {plan.stack}; nothing was changed",
            lines=plan.policy_violations,
        )
    if not plan.has_changes:
        ui.message("success", f"stack {plan.stack} is up to date: no changes")
    else:
        refuse_data_loss(plan, allow=allow_data_loss)
        refuse_instance_loss(plan, allow=allow_instance_replacement)
        require_confirmation(ui, yes=yes, what=f"update stack {plan.stack}")
        held = instance_changes(plan) if seams.roll_instances is not None else {}
        held_urns = {step.urn for steps in held.values() for step in steps}
        # Only held-back instance changes: no main update (and no deploys of it to wait for).
        up_started = datetime.now(UTC)
        if not held or any(step.urn not in held_urns for step in plan.changes):
            started = datetime.now(UTC)
            with ui.progress("update") as on_event:
                result = engine.up(on_event=on_event, exclude=sorted(held_urns) or None)
            ui.message("success", f"stack {plan.stack} updated")
            descriptor = seams.descriptor_from_outputs(result.outputs)
            report.deploys = await_deploys(seams, descriptor, started)
        else:
            descriptor = seams.descriptor_from_outputs(engine.outputs())
        report.updated = True
        if held:
            report.deploys += roll_instances(engine, seams, descriptor, held)
        report.logs = _report_error_logs(seams, descriptor, up_started)
    if skip_verify:
        ui.message("warning", "verification skipped (--skip-verify)")
        return report
    descriptor = seams.descriptor_from_outputs(engine.outputs())
    report.verify = verify_after(seams, descriptor)
    return report


def _report_error_logs(seams: Seams, descriptor: Descriptor, since: datetime) -> LogScan | None:
    """The instances' error-level lines over the update's window, shown one per line. They
    inform (a deploy's own verdict and `verify` decide whether `up` passed): a restart during
    a deploy commonly logs a line or two that says nothing about the new version."""
    if seams.error_logs is None:
        return None
    scan = seams.error_logs(descriptor, since, datetime.now(UTC))
    if not scan.read:
        seams.ui.message("warning", f"instance logs during the update {scan.summary()}")
    elif scan.error_count == 0:
        seams.ui.message("success", "no error lines in the instances' logs during the update")
    else:
        seams.ui.message(
            "warning", f"{scan.error_count} error line(s) in the instances' logs during the update"
        )
        for line in scan.first:
            seams.ui.message("warning", f"  {line}")
    return scan


def verify_after(seams: Seams, descriptor: Descriptor) -> VerifyOutcome:
    outcome = seams.verify(descriptor)
    if not outcome.passed:
        raise OperationFailed(f"verification failed: {outcome.summary}")
    seams.ui.message("success", f"verification passed: {outcome.summary}")
    return outcome
