"""`koinonia-infra plan`: the desired state of a stack, offline, with its monthly cost."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from koinonia_infra.cli.options import Format, FormatOption, Stack
from koinonia_infra.console import output
from koinonia_infra.project import DEFAULT_STACK

if TYPE_CHECKING:
    from rich.console import RenderableType

    from koinonia_infra.plan import Connection, Plan
    from koinonia_infra.program.mocks import Registration


def plan(
    stack: Stack = DEFAULT_STACK,
    fmt: FormatOption = Format.table,
    prices: Annotated[
        Path | None,
        typer.Option(
            "--prices", metavar="FILE", help="Price table (TOML) instead of the shipped one."
        ),
    ] = None,
) -> None:
    """Show what a stack declares and its estimated monthly cost. Offline: no Pulumi CLI,
    no credentials, no network (the real program runs under Pulumi's mock runtime)."""
    from koinonia_infra.plan import plan_json, plan_stack

    result = plan_stack(stack, prices_file=prices)
    for warning in result.warnings:
        output.warning(warning)
    if fmt is Format.json:
        output.json(plan_json(result))
    else:
        output.out.print(render_table(result), soft_wrap=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("plan")(plan)


# --------------------------------------------------------------------------------------------
# Table view
# --------------------------------------------------------------------------------------------

_SHORT_TYPE = {
    "render:services:WebService": "web service",
    "render:services:EnvVarsForService": "env vars",
    "render:postgres:Postgres": "postgres",
    "render:key-value:KeyValue": "key value",
}
ENV_VARS = "render:services:EnvVarsForService"


def _properties(res: "Registration") -> str:
    inputs = res.inputs
    if res.type == "render:services:WebService":
        details: dict[str, Any] = inputs.get("serviceDetails") or {}
        image = (inputs.get("image") or {}).get("imagePath")
        source = image or f"{inputs.get('repo', '?')} @ {inputs.get('branch', '?')}"
        return (
            f"{details.get('runtime', '?')} · {source} · health {details.get('healthCheckPath')}"
            f" · auto-deploy {inputs.get('autoDeploy', '?')}"
        )
    if res.type == "render:postgres:Postgres":
        ha = " · high availability" if inputs.get("enableHighAvailability") else ""
        return f"version {inputs.get('version', '?')}{ha}"
    if res.type == "render:key-value:KeyValue":
        return f"maxmemory {inputs.get('maxmemoryPolicy', '-')}"
    return ""


def _headline(res: "Registration") -> Text:
    from koinonia_infra.plan import plan_of

    action = f"adopt {res.import_id}" if res.import_id else "create"
    return Text.assemble(
        (res.logical_name, "bold cyan"),
        "  ",
        (res.render_name or "", "bold"),
        f"  {_SHORT_TYPE.get(res.type, res.type)} {plan_of(res) or ''} · ",
        (action, "yellow" if res.import_id else "green"),
    )


def _guard(res: "Registration") -> Text | None:
    if not res.protect:
        return None
    return Text("protected" + (", retained on delete" if res.retain_on_delete else ""), "magenta")


def _env_lines(
    env: "Registration",
    service: "Registration",
    result: "Plan",
    wiring: "dict[str, list[Connection]]",
) -> list[Text]:
    from koinonia_infra.plan import env_entries, is_secret
    from koinonia_infra.program.edge import CADDYFILE_ENV

    entries = env_entries(env)
    secret = sum(1 for _, value in entries if is_secret(value))
    lines = [
        Text.assemble(
            (env.logical_name, "cyan"),
            f"  {len(entries)} env vars ({secret} secret): ",
            ", ".join(key for key, _ in entries),
        )
    ]
    lines += [
        Text(f"{conn.env_key} ← {conn.datastore} ({conn.network} connection string)")
        for conn in wiring.get(service.render_name or "", [])
    ]
    if any(key == CADDYFILE_ENV for key, _ in entries):
        lines.append(Text(f"{CADDYFILE_ENV}: round robin over {len(result.upstreams)} upstreams"))
        lines += [Text(f"upstream {u}") for u in result.upstreams]
    return lines


def render_table(result: "Plan") -> "RenderableType":
    """A tree of the declared resources (env vars under their service), then the cost table."""
    from rich.console import Group
    from rich.table import Table
    from rich.tree import Tree

    settings = result.settings
    tree = Tree(
        Text.assemble(
            ("stack ", "bold"),
            (result.stack, "bold cyan"),
            f" · region {settings.region} · owner {settings.owner_id} · "
            f"{len(result.resources)} resources (evaluated offline, Pulumi mocks)",
        )
    )
    envs_by_service: dict[str, list[Registration]] = {}
    for res in result.resources:
        if res.type == ENV_VARS:
            envs_by_service.setdefault(str(res.inputs.get("serviceId")), []).append(res)
    wiring: dict[str, list[Connection]] = {}
    for conn in result.connections:
        wiring.setdefault(conn.service, []).append(conn)
    for res in result.resources:
        if res.type == ENV_VARS:
            continue
        node = tree.add(_headline(res))
        guard = _guard(res)
        if guard is not None:
            node.add(guard)
        node.add(Text(_properties(res), style="dim"))
        for env in envs_by_service.get(res.id, []):
            lines = _env_lines(env, res, result, wiring)
            sub = node.add(lines[0])
            for line in lines[1:]:
                sub.add(line)
    if not result.upstreams:
        tree.add(Text("edge disabled: the first instance is the entry point", style="yellow"))

    cost = Table(
        title="Estimated monthly cost",
        title_justify="left",
        caption=f"{result.prices.currency}, prices as of {result.prices.as_of.isoformat()}",
        caption_justify="left",
        show_footer=True,
    )
    cost.add_column("resource", footer="total", style="cyan")
    cost.add_column("plan")
    cost.add_column("per month", justify="right", footer=f"{result.total_usd:.2f}")
    for item in result.cost_items:
        cost.add_row(
            item.logical_name,
            item.plan,
            f"{item.usd:.2f}" if item.usd is not None else Text("no price", style="yellow"),
        )
    note = Text(
        "Indicative list prices; excludes Postgres storage, bandwidth and build minutes. "
        "Override with --prices FILE.",
        style="dim",
    )
    return Group(tree, "", cost, note)
