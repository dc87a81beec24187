"""`destroy-instance N`, the rollback: guard rails (declared, not the last, survivors healthy,
only N's resources deleted), the confirmation by service name, the stack-file edit that is
restored if the update fails, and the health check the guard rails use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koinonia_infra.deploy.deploys import await_deploys
from koinonia_infra.deploy.types import (
    DELETE_OPS,
    EDGE_NAMES,
    ChangePlan,
    DeployUI,
    HealthCheck,
    Seams,
    Step,
    UpReport,
)
from koinonia_infra.deploy.up import verify_after
from koinonia_infra.descriptor import Descriptor, InstanceRef
from koinonia_infra.errors import (
    KoinoniaError,
    OperationFailed,
    UsageError,
)
from koinonia_infra.measure.health import HealthResult

if TYPE_CHECKING:
    from koinonia_infra.deploy.types import Engine


def check_destroy_request(number: int, declared: Sequence[int]) -> None:
    """Before any engine: N must be declared, and must not be the last instance."""
    listed = ", ".join(str(n) for n in declared)
    if number not in declared:
        raise UsageError(f"instance {number} is not declared in api.instances ({listed})")
    if len(declared) == 1:
        raise UsageError(
            f"refusing to remove instance {number}: it is the last instance; the API would go down"
        )


def check_survivors(
    descriptor: Descriptor, number: int, health: HealthCheck, *, force: bool, ui: DeployUI
) -> list[tuple[InstanceRef, HealthResult]]:
    survivors = [
        i for i in sorted(descriptor.instances, key=lambda i: i.number) if i.number != number
    ]
    results = [(instance, health(instance)) for instance in survivors]
    for instance, result in results:
        detail = result.detail
        if result.ok:
            ms = result.latency_ms
            detail = "healthy" if ms is None else f"healthy ({ms:.0f} ms)"
        ui.message(
            "success" if result.ok else "error",
            f"instance {instance.number} ({instance.name}): {detail}",
        )
    sick = [(i, r) for i, r in results if not r.ok]
    if not survivors:
        raise UsageError(f"no surviving instance in the stack outputs besides {number}")
    if sick and not force:
        first, why = sick[0]
        raise OperationFailed(
            f"refusing to remove instance {number}: surviving instance "
            f"{first.number} ({first.name}) is unhealthy ({why.detail}); "
            "fix it first, or pass --force",
        )
    if sick:
        ui.message("warning", "continuing despite unhealthy survivors (--force)")
    return results


def unexpected_destroy_steps(plan: ChangePlan, number: int) -> tuple[list[Step], bool]:
    """Steps other than: instance N's resources deleted, the edge updated. Also whether N's
    service is actually among the deletions."""
    prefix = f"api-{number}"
    unexpected: list[Step] = []
    deletes_service = False
    for step in plan.changes:
        own = step.name == prefix or step.name.startswith(prefix + "-")
        if own and step.op in DELETE_OPS:
            deletes_service = deletes_service or step.is_api_service
            continue
        if step.name in EDGE_NAMES and step.op == "update":
            continue
        if step.type == "pulumi:pulumi:Stack" and step.op == "update":
            continue
        unexpected.append(step)
    return unexpected, deletes_service


@dataclass
class DestroyRequest:
    number: int
    service_name: str
    stack_file: Path
    new_stack_text: str
    yes: bool = False
    force: bool = False


def run_destroy_instance(
    engine: Engine,
    seams: Seams,
    request: DestroyRequest,
    *,
    current: Descriptor,
) -> UpReport:
    """The runbook's rollback: survivors healthy → exact preview → typed confirmation → edit the
    stack file → up (restore the file if it fails) → wait for deploys → verify the survivors."""
    ui = seams.ui
    number = request.number
    check_survivors(current, number, seams.health, force=request.force, ui=ui)

    from koinonia_infra.files import write_atomic

    # Atomic writes: on a full disk the stack file is never left truncated (write_text would
    # empty it first), and the error names the file (koinonia_infra/files.py).
    original = request.stack_file.read_bytes()
    preview_file = request.stack_file.with_name(f".{request.stack_file.name}.destroy-{number}")
    write_atomic(preview_file, request.new_stack_text)
    try:
        with ui.progress("preview") as on_event:
            plan = engine.preview(on_event=on_event, config_file=preview_file)
    finally:
        preview_file.unlink(missing_ok=True)
    ui.show_plan(plan)
    unexpected, deletes_service = unexpected_destroy_steps(plan, number)
    if unexpected or not deletes_service:
        lines = [f"{s.op} {s.type} {s.name}" for s in unexpected]
        if not deletes_service:
            lines.append(f"the preview does not delete api-{number} (already gone?)")
        raise OperationFailed(
            f"refusing to remove instance {number}: the preview does more than delete "
            f"api-{number} and update the edge; nothing was changed",
            lines=lines,
        )
    if plan.policy_violations:
        raise OperationFailed(
            "policy violations; nothing was changed", lines=plan.policy_violations
        )
    _confirm_destroy(ui, request)

    started = datetime.now(UTC)
    write_atomic(request.stack_file, request.new_stack_text)
    try:
        with ui.progress("update") as on_event:
            result = engine.up(on_event=on_event)
    except BaseException as exc:
        write_atomic(request.stack_file, original)
        note = f"{request.stack_file.name} restored to its previous content"
        if isinstance(exc, KoinoniaError):
            exc.lines.append(note)
        else:
            ui.message("warning", note)
        raise
    report = UpReport(plan=plan, updated=True)
    ui.message(
        "success", f"instance {number} ({request.service_name}) removed from stack {plan.stack}"
    )
    try:
        descriptor = seams.descriptor_from_outputs(result.outputs)
        report.deploys = await_deploys(seams, descriptor, started)
        report.verify = verify_after(seams, descriptor)
    finally:
        ui.message(
            "warning",
            f"commit {request.stack_file.name} now: otherwise the next deploy from main brings "
            f"instance {number} back",
        )
    return report


def _confirm_destroy(ui: DeployUI, request: DestroyRequest) -> None:
    if request.yes:
        return
    what = f"remove instance {request.number}"
    if not ui.interactive:
        raise UsageError(f"refusing to {what} without confirmation: no terminal; pass --yes")
    answer = ui.ask(f"Type the service name ({request.service_name}) to {what}")
    if answer.strip() != request.service_name:
        raise OperationFailed(f"cancelled: the name did not match; did not {what}")


def http_health(
    path: str = "/health", *, timeout: float = 5.0, transport: Any = None
) -> HealthCheck:
    """A HealthCheck doing `GET <instance url><path>`, judged by the one rule
    (`measure.health`: 200 with a JSON `"status": "ok"`)."""
    from koinonia_infra.measure.health import health_url, probe_health

    def check(instance: InstanceRef) -> HealthResult:
        return probe_health(health_url(instance.url, path), timeout=timeout, transport=transport)

    return check
