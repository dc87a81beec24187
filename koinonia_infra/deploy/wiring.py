"""The real seams around `preview`, `up`, `destroy-instance` and `outputs`, and the one call each
command makes. Tests replace `open_engine` and `build_seams` here (the named seams); everything
else in this package is tested through them.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koinonia_infra.console import output

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from koinonia_infra.deploy.types import (
        ApplyInstance,
        ChangePlan,
        DeployOutcome,
        DeployUI,
        Engine,
        InstanceRollout,
        Seams,
        UpReport,
        VerifyOutcome,
    )
    from koinonia_infra.descriptor import Descriptor
    from koinonia_infra.ops.logs import LogScan
    from koinonia_infra.settings import Settings


def open_engine(stack: str, *, need_render_key: bool = True, create: bool = False) -> Engine:
    """The engine seam: tests replace this function with a fake engine."""
    from koinonia_infra.deploy.engine import open_stack

    return open_stack(stack, need_render_key=need_render_key, create=create)


def build_seams(stack: str, ui: DeployUI, *, deploy_timeout: float) -> Seams:
    """The real seams around an operation: Render API, health checks, verify."""
    from koinonia_infra.deploy.deploys import wait_for_deploys
    from koinonia_infra.deploy.destroy import http_health
    from koinonia_infra.deploy.outputs import descriptor_from_outputs, render_edge_lookup
    from koinonia_infra.deploy.types import Seams
    from koinonia_infra.deploy.up import adopted_names
    from koinonia_infra.errors import EnvironmentProblem
    from koinonia_infra.ops.guard import hold_for_removal
    from koinonia_infra.project import find_project_dir

    project_dir = find_project_dir()
    settings = stack_settings(stack, project_dir)
    health_path = settings.api.health_check_path if settings else "/health"

    def describe(outputs: Any) -> Descriptor:
        return descriptor_from_outputs(
            outputs,
            stack=stack,
            project_dir=project_dir,
            edge_lookup=render_edge_lookup(),
            settings=settings,
        )

    def wait(descriptor: Descriptor, since: datetime) -> list[DeployOutcome]:
        from koinonia_infra.render_api import RenderClient

        client = RenderClient.for_descriptor(descriptor)
        if client is None:
            raise EnvironmentProblem("no Render API key to follow deploys: set RENDER_API_KEY")
        with client:
            return wait_for_deploys(client, descriptor, since=since, timeout=deploy_timeout)

    def roll_instances(
        descriptor: Descriptor,
        order: Sequence[int],
        apply: ApplyInstance,
        provider_deploys: Mapping[int, int],
    ) -> InstanceRollout:
        from koinonia_infra.deploy.instance_rollout import roll_instance_changes
        from koinonia_infra.measure.health import probe_health
        from koinonia_infra.ops.common import SteadyRun
        from koinonia_infra.ops.guard import deployment_lock
        from koinonia_infra.render_api import RenderClient

        client = RenderClient.for_descriptor(descriptor)
        if client is None:
            raise EnvironmentProblem(
                "no Render API key to roll out the instances' changes: set RENDER_API_KEY"
            )
        # The same lock `rollout` and the drill take: none of them may overlap this one.
        with client, deployment_lock(descriptor, "up (instance changes)"):
            return roll_instance_changes(
                descriptor,
                order,
                apply,
                provider_deploys,
                client=client,
                start_traffic=SteadyRun,
                probe=probe_health,
                deploy_timeout=deploy_timeout,
                on_event=output.info,
            )

    def error_logs(descriptor: Descriptor, start: datetime, end: datetime) -> LogScan:
        from koinonia_infra.ops.logs import LogScan, instance_roles, scan_errors
        from koinonia_infra.render_api import RenderClient

        client = RenderClient.for_descriptor(descriptor)
        if client is None:
            return LogScan(read=False, start=start, end=end, reason="no Render API key")
        with client:
            return scan_errors(client, instance_roles(descriptor), start=start, end=end)

    return Seams(
        ui=ui,
        descriptor_from_outputs=describe,
        wait_for_deploys=wait,
        verify=lambda d: verify_deployment(d, settings, health_path),
        health=http_health(health_path),
        roll_instances=roll_instances,
        hold=lambda descriptor, number: hold_for_removal(descriptor, number, stack=stack),
        adopted=adopted_names(settings),
        error_logs=error_logs,
    )


def stack_settings(stack: str, project_dir: Path) -> Settings | None:
    """The stack's settings, or None when its file is missing or invalid (the engine, which
    reads the same file, then names the problem)."""
    from koinonia_infra.errors import ConfigError
    from koinonia_infra.project import stack_path
    from koinonia_infra.settings import load_settings

    try:
        return load_settings(stack_path(stack, project_dir))
    except ConfigError:
        return None


def verify_deployment(
    descriptor: Descriptor, settings: Settings | None, health_path: str
) -> VerifyOutcome:
    """`verify` on the new deployment, with the stack's thresholds."""
    from koinonia_infra.deploy.types import VerifyOutcome
    from koinonia_infra.ops.guard import suspended_hints, suspended_in_verify
    from koinonia_infra.targets import DeploymentSource
    from koinonia_infra.verify import VerifyOptions, run_verify

    options = VerifyOptions.from_settings(
        settings.verify if settings else None, use_environment=True, health_path=health_path
    )
    report = run_verify(descriptor, options, on_progress=output.info)
    flags = DeploymentSource(stack=descriptor.stack).flags
    for hint in suspended_hints(suspended_in_verify(report), flags):
        output.warning(hint)
    failed = [f"{c.name} ({c.target})" for c in report.failed]
    if report.passed:
        return VerifyOutcome(True, f"{len(report.checks)} checks, none failed")
    return VerifyOutcome(False, f"{len(failed)} check(s) failed: {', '.join(failed)}")


# ------------------------------------------------------------------------------------------
# The one call of each command
# ------------------------------------------------------------------------------------------


def preview_stack(stack: str, ui: DeployUI, *, diff: bool, refresh: bool) -> ChangePlan:
    """`preview`: the plan of `stack`, shown live, adopted resources called out."""
    from koinonia_infra.deploy.up import adopted_names, run_preview
    from koinonia_infra.project import find_project_dir

    adopted = adopted_names(stack_settings(stack, find_project_dir()))
    return run_preview(open_engine(stack), ui, diff=diff, adopted=adopted, refresh=refresh)


def up_stack(
    stack: str,
    ui: DeployUI,
    *,
    yes: bool,
    allow_data_loss: bool,
    allow_instance_replacement: bool,
    skip_verify: bool,
    deploy_timeout: float,
) -> UpReport:
    """`up`: preview, confirm, update, wait for the deploys, verify."""
    from koinonia_infra.deploy.up import run_up

    engine = open_engine(stack, create=True)
    return run_up(
        engine,
        build_seams(stack, ui, deploy_timeout=deploy_timeout),
        yes=yes,
        allow_data_loss=allow_data_loss,
        allow_instance_replacement=allow_instance_replacement,
        skip_verify=skip_verify,
    )


def destroy_instance(
    stack: str,
    number: int,
    ui: DeployUI,
    *,
    yes: bool,
    force: bool,
    deploy_timeout: float,
) -> UpReport:
    """`destroy-instance N`: check the request and the edited stack file before any engine,
    then remove N under the deployment lock (ops/guard.py), guard rails in destroy.py."""
    from koinonia_infra.deploy.destroy import (
        DestroyRequest,
        check_destroy_request,
        run_destroy_instance,
    )
    from koinonia_infra.deploy.stackfile import remove_instance, settings_of_text
    from koinonia_infra.project import find_project_dir, stack_path
    from koinonia_infra.settings import load_settings

    path = stack_path(stack, find_project_dir())
    settings = load_settings(path)
    check_destroy_request(number, settings.api.instances)
    new_text = remove_instance(path.read_text(encoding="utf-8"), number, source=str(path))
    settings_of_text(new_text, source=str(path))

    engine = open_engine(stack)
    seams = build_seams(stack, ui, deploy_timeout=deploy_timeout)
    current = seams.descriptor_from_outputs(engine.outputs())
    request = DestroyRequest(
        number=number,
        service_name=settings.api.service_name(number),
        stack_file=path,
        new_stack_text=new_text,
        yes=yes,
        force=force,
    )
    with seams.hold(current, number) if seams.hold else nullcontext():
        return run_destroy_instance(engine, seams, request, current=current)


def stack_descriptor(stack: str) -> Descriptor:
    """`outputs`: the deployment descriptor from the stack's outputs."""
    from koinonia_infra.deploy.outputs import descriptor_of_outputs

    return descriptor_of_outputs(open_engine(stack, need_render_key=False).outputs(), stack=stack)
