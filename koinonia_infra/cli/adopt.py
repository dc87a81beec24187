"""`koinonia-infra adopt`: write into the stack file what importing production needs."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from koinonia_infra.cli.options import RenderApiUrl, Stack, StateDir, Target, Yes
from koinonia_infra.console import output
from koinonia_infra.project import DEFAULT_STACK

if TYPE_CHECKING:
    from koinonia_infra.adopt.core import Adoption
    from koinonia_infra.render_api import RenderClient

NameOpt = Annotated[str | None, typer.Option(help="Render name; default: the stack file's.")]


def _client(target: str | None, state_dir: Path | None, api_url: str | None) -> "RenderClient":
    from koinonia_infra.errors import EnvironmentProblem
    from koinonia_infra.render_api import RenderClient, api_access

    descriptor = None
    if target is not None or state_dir is not None:
        from koinonia_infra.targets import resolve_descriptor

        descriptor = resolve_descriptor(target=target, state_dir=state_dir)
    access = api_access(descriptor, api_url)
    if access is None:
        raise EnvironmentProblem(
            "no Render API key: set RENDER_API_KEY (or RENDER_APIKEY) in the environment"
        )
    return RenderClient(access.url, access.key)


def _show(adoption: "Adoption") -> None:
    from rich.text import Text

    if adoption.changed:
        output.info(f"Changes to {adoption.path}:")
        for line in adoption.diff.splitlines():
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            output.err.print(Text(line, style=style), highlight=False)
    output.info("What the engine will do with it (the program under Pulumi's mocks, each import")
    output.info("compared with what pulumi-render reads back from Render):")
    for step in adoption.steps:
        ok = step.op == "create" or (step.diff is not None and step.diff.no_change)
        (output.success if ok else output.warning)(step.describe())
    env = adoption.env
    output.info(f"Env vars of the live service (keys only): {', '.join(env.live_keys) or 'none'}")
    if env.secret_looking:
        output.info(f"  secret-looking: {', '.join(env.secret_looking)}")
    if env.undeclared:
        output.warning(
            "declared nowhere in the stack (api.env / api.secretEnv), so the first `up` DROPS "
            "them from instance 1 (the env resource owns the whole set): "
            + ", ".join(env.undeclared)
        )
    if env.commands:
        output.info(
            "Store each secret value (the CLI prompts for it; never pass it as an argument):"
        )
        for command in env.commands:
            output.info(f"  {command}")


def adopt(
    *,
    stack: Stack = DEFAULT_STACK,
    service: NameOpt = None,
    postgres: NameOpt = None,
    key_value: Annotated[
        str | None, typer.Option("--key-value", help="Render name; default: the stack file's.")
    ] = None,
    yes: Yes = False,
    check: bool = typer.Option(
        False, "--check", help="Only compare: exit 0 if the stack file matches live, 1 if not."
    ),
    target: Target = None,
    state_dir: StateDir = None,
    render_api_url: RenderApiUrl = None,
) -> None:
    """Take over what production already runs, without touching it.

    Finds the web service, the Postgres and the Key Value by name through Render's API and
    writes into `Pulumi.<stack>.yaml` (comments and order kept, after showing the diff and asking)
    everything their import needs to change nothing. `--check` only compares."""
    from koinonia_infra.adopt import core
    from koinonia_infra.errors import OperationFailed, UsageError

    with _client(target, state_dir, render_api_url) as client:
        if check:
            lines = core.check(
                stack, client, service=service, postgres=postgres, key_value=key_value
            )
            if lines:
                raise OperationFailed(
                    f"Pulumi.{stack}.yaml does not match the live resources", lines=lines
                )
            output.success(f"Pulumi.{stack}.yaml matches the live resources")
            return
        adoption = core.prepare(
            stack, client, service=service, postgres=postgres, key_value=key_value
        )
    _show(adoption)
    unsafe = core.unsafe_steps(adoption.steps)
    if unsafe:
        output.warning("an import above would not be a no-op; fix it before `up`")
    if not adoption.changed:
        output.success(
            f"{adoption.path.name} already declares the live resources; nothing to write"
        )
        return
    if not yes:
        if not output.interactive:
            raise UsageError(
                f"refusing to write {adoption.path.name} without confirmation: no terminal; "
                "pass --yes"
            )
        if not typer.confirm(f"Write these changes to {adoption.path.name}?", default=False):
            raise OperationFailed(f"cancelled: {adoption.path.name} was not changed")
    core.write(adoption)
    output.success(
        f"wrote {adoption.path.name}; next: `koinonia-infra preview --stack {stack}`, then `up`"
    )


def register(app: typer.Typer) -> None:
    app.command("adopt")(adopt)
