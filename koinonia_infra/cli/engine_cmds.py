"""Commands that drive the Pulumi engine: preview, up, destroy-instance, outputs, engine."""

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from koinonia_infra.console import output
from koinonia_infra.errors import EXIT_CODES_HELP

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from koinonia_infra.deploy import (
        ApplyEnv,
        DeployOutcome,
        DeployUI,
        EnvRollout,
        Seams,
        VerifyOutcome,
    )
    from koinonia_infra.descriptor import Descriptor
    from koinonia_infra.engine import Engine
    from koinonia_infra.ops.logs import LogScan
    from koinonia_infra.settings import Settings


class Format(StrEnum):
    table = "table"
    json = "json"


STACK = typer.Option("prod", "--stack", "-s", help="Stack name (Pulumi.<stack>.yaml).")
FORMAT = typer.Option(Format.table, "--format", "-f", help="table (for people) or json.")


def open_engine(stack: str, *, need_render_key: bool = True, create: bool = False) -> "Engine":
    """The engine seam: tests replace this function with a fake engine."""
    from koinonia_infra.engine import open_stack

    return open_stack(stack, need_render_key=need_render_key, create=create)


def build_seams(stack: str, ui: "DeployUI", *, deploy_timeout: float) -> "Seams":
    """The real seams around an operation: Render API, health checks, verify."""
    from koinonia_infra.deploy import Seams, adopted_names, http_health, wait_for_deploys
    from koinonia_infra.engine import descriptor_from_outputs, render_edge_lookup
    from koinonia_infra.errors import EnvironmentProblem
    from koinonia_infra.ops.guard import hold_for_removal
    from koinonia_infra.project import find_project_dir

    project_dir = find_project_dir()
    settings = _settings(stack, project_dir)
    health_path = settings.api.health_check_path if settings else "/health"

    def describe(outputs: Any) -> "Descriptor":
        return descriptor_from_outputs(
            outputs, stack=stack, project_dir=project_dir, edge_lookup=render_edge_lookup()
        )

    def wait(descriptor: "Descriptor", since: "datetime") -> "list[DeployOutcome]":
        from koinonia_infra.render_api import RenderClient

        client = RenderClient.for_descriptor(descriptor)
        if client is None:
            raise EnvironmentProblem("no Render API key to follow deploys: set RENDER_API_KEY")
        with client:
            return wait_for_deploys(client, descriptor, since=since, timeout=deploy_timeout)

    def roll_env(
        descriptor: "Descriptor",
        order: "Sequence[int]",
        apply: "ApplyEnv",
        provider_deploys: "Mapping[int, bool]",
    ) -> "EnvRollout":
        from koinonia_infra.deploy import roll_env_changes
        from koinonia_infra.measure.health import probe_health
        from koinonia_infra.ops.common import SteadyRun
        from koinonia_infra.ops.guard import deployment_lock
        from koinonia_infra.render_api import RenderClient

        client = RenderClient.for_descriptor(descriptor)
        if client is None:
            raise EnvironmentProblem(
                "no Render API key to roll out env changes: set RENDER_API_KEY"
            )
        # The same lock `rollout` and the drill take: none of them may overlap this one.
        with client, deployment_lock(descriptor, "up (env changes)"):
            return roll_env_changes(
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

    def error_logs(descriptor: "Descriptor", start: "datetime", end: "datetime") -> "LogScan":
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
        roll_env=roll_env,
        hold=lambda descriptor, number: hold_for_removal(descriptor, number, stack=stack),
        adopted=adopted_names(settings),
        error_logs=error_logs,
    )


def _settings(stack: str, project_dir: Path) -> "Settings | None":
    from koinonia_infra.errors import ConfigError
    from koinonia_infra.project import stack_path
    from koinonia_infra.settings import load_settings

    try:
        return load_settings(stack_path(stack, project_dir))
    except ConfigError:
        return None


def verify_deployment(
    descriptor: "Descriptor", settings: "Settings | None", health_path: str
) -> "VerifyOutcome":
    """`verify` on the new deployment, with the stack's thresholds."""
    from koinonia_infra.deploy import VerifyOutcome
    from koinonia_infra.verify import VerifyOptions, run_verify

    options = VerifyOptions.from_settings(
        settings.verify if settings else None, use_environment=True, health_path=health_path
    )
    report = run_verify(descriptor, options, on_progress=output.info)
    from koinonia_infra.ops.guard import suspended_hints, suspended_in_verify, target_flags

    flags = target_flags(stack=descriptor.stack)
    for hint in suspended_hints(suspended_in_verify(report), flags):
        output.warning(hint)
    failed = [f"{c.name} ({c.target})" for c in report.failed]
    if report.passed:
        return VerifyOutcome(True, f"{len(report.checks)} checks, none failed")
    return VerifyOutcome(False, f"{len(failed)} check(s) failed: {', '.join(failed)}")


# ------------------------------------------------------------------------------------------


def preview(
    stack: str = STACK,
    diff: bool = typer.Option(False, "--diff", help="Ask the engine for property-level diffs."),
    refresh: bool = typer.Option(
        False,
        "--refresh",
        help="Read the live state first (drift); known refresh noise is not counted.",
    ),
    fmt: Format = FORMAT,
) -> None:
    """Show what `up` would change (live, with the policy pack).

    Replacements and deletions of datastores or API services are called out in red.
    JSON: {stack, changeSummary, steps}."""
    from koinonia_infra.deploy import adopted_names, run_preview
    from koinonia_infra.engine_display import RichUI
    from koinonia_infra.project import find_project_dir

    adopted = adopted_names(_settings(stack, find_project_dir()))
    plan = run_preview(open_engine(stack), RichUI(), diff=diff, adopted=adopted, refresh=refresh)
    if fmt is Format.json:
        output.json(plan.to_json())


def up(
    *,
    stack: str = STACK,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (CI)."),
    allow_data_loss: bool = typer.Option(
        False, "--allow-data-loss", help="Allow an update that deletes or replaces a datastore."
    ),
    allow_instance_replacement: bool = typer.Option(
        False,
        "--allow-instance-replacement",
        help="Allow an update that replaces or deletes a live API instance.",
    ),
    skip_verify: bool = typer.Option(False, "--skip-verify", help="Do not run verify afterwards."),
    deploy_timeout: float = typer.Option(
        900.0, "--deploy-timeout", metavar="SECONDS", help="How long to wait for Render deploys."
    ),
    fmt: Format = FORMAT,
) -> None:
    """Preview, confirm, update the stack, wait for every Render deploy, then verify."""
    from koinonia_infra.deploy import run_up
    from koinonia_infra.engine_display import RichUI

    ui = RichUI()
    engine = open_engine(stack, create=True)
    report = run_up(
        engine,
        build_seams(stack, ui, deploy_timeout=deploy_timeout),
        yes=yes,
        allow_data_loss=allow_data_loss,
        allow_instance_replacement=allow_instance_replacement,
        skip_verify=skip_verify,
    )
    if fmt is Format.json:
        output.json(report.to_json())


def destroy_instance(
    number: int = typer.Argument(..., metavar="N", help="The instance number to remove."),
    *,
    stack: str = STACK,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask to type the service name."),
    force: bool = typer.Option(
        False, "--force", help="Proceed even if a surviving instance is unhealthy."
    ),
    deploy_timeout: float = typer.Option(
        900.0, "--deploy-timeout", metavar="SECONDS", help="How long to wait for Render deploys."
    ),
) -> None:
    """Roll back: remove instance N and update the stack, with guard rails.

    Checks the survivors are healthy, shows exactly what will be deleted, asks for the service
    name, edits api.instances in Pulumi.<stack>.yaml (restored if the update fails). Commit the
    stack file afterwards, or the next deploy brings instance N back."""
    from koinonia_infra.deploy import DestroyRequest, check_destroy_request, run_destroy_instance
    from koinonia_infra.engine_display import RichUI
    from koinonia_infra.project import find_project_dir, stack_path
    from koinonia_infra.settings import load_settings
    from koinonia_infra.stackfile import remove_instance, settings_of_text

    project_dir = find_project_dir()
    path = stack_path(stack, project_dir)
    settings = load_settings(path)
    check_destroy_request(number, settings.api.instances)
    new_text = remove_instance(path.read_text(encoding="utf-8"), number, source=str(path))
    settings_of_text(new_text, source=str(path))

    ui = RichUI()
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
    from contextlib import nullcontext

    with seams.hold(current, number) if seams.hold else nullcontext():
        run_destroy_instance(engine, seams, request, current=current)


def outputs(stack: str = STACK, fmt: Format = FORMAT) -> None:
    """The deployment descriptor from the stack outputs.

    The shape `verify --outputs FILE` reads and the sandbox writes."""
    from koinonia_infra.engine import descriptor_from_outputs, render_edge_lookup

    engine = open_engine(stack, need_render_key=False)
    values = engine.outputs()
    if not values:
        from koinonia_infra.errors import ConfigError

        raise ConfigError(f"stack {stack} has no outputs yet: run `koinonia-infra up` first")
    descriptor = descriptor_from_outputs(values, stack=stack, edge_lookup=render_edge_lookup())
    if fmt is Format.json:
        output.json(descriptor.public_dict())
        return
    from rich.table import Table

    from koinonia_infra.console import esc

    # Stack outputs are shown as written, never as rich markup.
    table = Table(
        title=f"stack {esc(stack)} · edge {esc(descriptor.edge_url)}", title_justify="left"
    )
    for column in ("instance", "name", "service id", "url", "private address"):
        table.add_column(column)
    for inst in sorted(descriptor.instances, key=lambda i: i.number):
        table.add_row(
            str(inst.number),
            *(esc(v) for v in (inst.name, inst.service_id, inst.url, inst.private_address)),
        )
    output.out.print(table)


engine_app = typer.Typer(
    help="The pinned Pulumi engine (CLI) this tool drives.", no_args_is_help=True
)


@engine_app.command("install")
def engine_install() -> None:
    """Install the pinned Pulumi CLI into a per-user folder (preferred over PATH)."""
    from koinonia_infra.engine import PULUMI_VERSION, install_engine, install_root

    output.info(f"installing pulumi {PULUMI_VERSION} into {install_root()}")
    status = install_engine()
    output.success(f"pulumi {status.version} installed: {status.command}")


@engine_app.command("status")
def engine_status(fmt: Format = FORMAT) -> None:
    """Which Pulumi engine would be used, and its version."""
    from koinonia_infra.engine import engine_status as status_of

    status = status_of()
    if fmt is Format.json:
        output.json(status.to_json())
        return
    origin = "pinned install" if status.source == "pinned" else "from PATH"
    output.text(f"engine: {status.command} ({origin})\nversion: {status.version}")
    if status.matches_pin:
        output.success(f"matches the tested version {status.pinned}")
    else:
        output.warning(
            f"tested with pulumi {status.pinned}; run `koinonia-infra engine install` to use it"
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    epilog = EXIT_CODES_HELP
    app.command("preview", epilog=epilog)(preview)
    app.command("up", epilog=epilog)(up)
    app.command("destroy-instance", epilog=epilog)(destroy_instance)
    app.command("outputs", epilog=epilog)(outputs)
    app.add_typer(engine_app, name="engine")
