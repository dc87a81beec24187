"""Commands that drive the Pulumi engine: preview, up, destroy-instance, outputs, engine.
Each parses its options and makes one call into koinonia_infra.deploy.wiring."""

from typing import Annotated

import typer

from koinonia_infra.cli.options import Format, FormatOption, Stack, Yes
from koinonia_infra.console import output
from koinonia_infra.errors import EXIT_CODES_HELP
from koinonia_infra.project import DEFAULT_STACK

DeployTimeout = Annotated[
    float,
    typer.Option(
        "--deploy-timeout", metavar="SECONDS", help="How long to wait for Render deploys."
    ),
]


def preview(
    stack: Stack = DEFAULT_STACK,
    diff: bool = typer.Option(False, "--diff", help="Ask the engine for property-level diffs."),
    refresh: bool = typer.Option(
        False,
        "--refresh",
        help="Read the live state first (drift); known refresh noise is not counted.",
    ),
    fmt: FormatOption = Format.table,
) -> None:
    """Show what `up` would change (live, with the policy pack).

    Replacements and deletions of datastores or API services are called out in red.
    JSON: {stack, changeSummary, steps}."""
    from koinonia_infra.deploy.display import RichUI
    from koinonia_infra.deploy.wiring import preview_stack

    plan = preview_stack(stack, RichUI(), diff=diff, refresh=refresh)
    if fmt is Format.json:
        output.json(plan.to_json())


def up(
    *,
    stack: Stack = DEFAULT_STACK,
    yes: Yes = False,
    allow_data_loss: bool = typer.Option(
        False, "--allow-data-loss", help="Allow an update that deletes or replaces a datastore."
    ),
    allow_instance_replacement: bool = typer.Option(
        False,
        "--allow-instance-replacement",
        help="Allow an update that replaces or deletes a live API instance.",
    ),
    skip_verify: bool = typer.Option(False, "--skip-verify", help="Do not run verify afterwards."),
    deploy_timeout: DeployTimeout = 900.0,
    fmt: FormatOption = Format.table,
) -> None:
    """Preview, confirm, update the stack, wait for every Render deploy, then verify."""
    from koinonia_infra.deploy.display import RichUI
    from koinonia_infra.deploy.wiring import up_stack

    report = up_stack(
        stack,
        RichUI(),
        yes=yes,
        allow_data_loss=allow_data_loss,
        allow_instance_replacement=allow_instance_replacement,
        skip_verify=skip_verify,
        deploy_timeout=deploy_timeout,
    )
    if fmt is Format.json:
        output.json(report.to_json())


def destroy_instance(
    number: int = typer.Argument(..., metavar="N", help="The instance number to remove."),
    *,
    stack: Stack = DEFAULT_STACK,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask to type the service name."),
    force: bool = typer.Option(
        False, "--force", help="Proceed even if a surviving instance is unhealthy."
    ),
    deploy_timeout: DeployTimeout = 900.0,
) -> None:
    """Roll back: remove instance N and update the stack, with guard rails.

    Checks the survivors are healthy, shows exactly what will be deleted, asks for the service
    name, edits api.instances in Pulumi.<stack>.yaml (restored if the update fails). Commit the
    stack file afterwards, or the next deploy brings instance N back."""
    from koinonia_infra.deploy.display import RichUI
    from koinonia_infra.deploy.wiring import destroy_instance as destroy

    destroy(stack, number, RichUI(), yes=yes, force=force, deploy_timeout=deploy_timeout)


def outputs(stack: Stack = DEFAULT_STACK, fmt: FormatOption = Format.table) -> None:
    """The deployment descriptor from the stack outputs.

    The shape `verify --outputs FILE` reads and the sandbox writes."""
    from rich.table import Table

    from koinonia_infra.console import esc
    from koinonia_infra.deploy.wiring import stack_descriptor

    descriptor = stack_descriptor(stack)
    if fmt is Format.json:
        output.json(descriptor.public_dict())
        return
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
    from koinonia_infra.deploy.engine import PULUMI_VERSION, install_engine, install_root

    output.info(f"installing pulumi {PULUMI_VERSION} into {install_root()}")
    status = install_engine()
    output.success(f"pulumi {status.version} installed: {status.command}")


@engine_app.command("status")
def engine_status(fmt: FormatOption = Format.table) -> None:
    """Which Pulumi engine would be used, and its version."""
    from koinonia_infra.deploy.engine import engine_status as status_of

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
