"""`sandbox up | status | down`: the production architecture on this machine."""

from typing import TYPE_CHECKING, Any

import typer

from koinonia_infra.cli.options import Format, FormatOption, StateDir
from koinonia_infra.console import esc, output

if TYPE_CHECKING:
    from koinonia_infra.sandbox.lifecycle import DownResult, StatusResult, UpResult

sandbox_app = typer.Typer(
    name="sandbox",
    help="Rehearse locally: PostgreSQL, Redis, N API instances, the Caddy edge and a "
    "Render-shaped control plane, all on 127.0.0.1.",
    no_args_is_help=True,
)


@sandbox_app.command("up")
def up_command(
    instances: int = typer.Option(2, "--instances", "-n", help="Number of API instances."),
    state_dir: StateDir = None,
    fmt: FormatOption = Format.table,
    timing: str = typer.Option(
        "fast",
        "--timing",
        help="fast: suspend, resume and deploys act at once. render: Render's sequence with "
        "scaled delays (async suspend, resume as a deploy, old instance kept after a deploy).",
    ),
    # Not the shared `--stack`: here 'none' is a value, and prod is the default only when its
    # stack file is found (a sandbox runs without one).
    stack: str | None = typer.Option(
        None,
        "--stack",
        "-s",
        help="Run this stack file's edge settings (the production Caddyfile) and verify "
        "thresholds; 'none' for the defaults [default: prod when Pulumi.prod.yaml is found].",
    ),
) -> None:
    """Start the sandbox and wait until every part is healthy."""
    from koinonia_infra.sandbox.lifecycle import up
    from koinonia_infra.sandbox.stack import resolve_sandbox_stack

    settings = resolve_sandbox_stack(stack)  # a bad stack file fails before anything starts
    result = up(
        state_dir, instances, progress=lambda m: output.info(f"  {m}"), timing=timing,
        stack=settings,
    )  # fmt: skip
    _render_up(result, fmt)


@sandbox_app.command("status")
def status_command(state_dir: StateDir = None, fmt: FormatOption = Format.table) -> None:
    """Show the sandbox's processes and whether each instance and the edge are healthy."""
    from koinonia_infra.sandbox.lifecycle import status

    _render_status(status(state_dir), fmt)


@sandbox_app.command("down")
def down_command(
    state_dir: StateDir = None,
    purge: bool = typer.Option(
        False, "--purge", help="Also delete the state dir (database, logs, descriptor)."
    ),
) -> None:
    """Stop every process the sandbox started; keeps its data unless --purge."""
    from koinonia_infra.sandbox.lifecycle import down

    _render_down(down(state_dir, purge=purge))


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.add_typer(sandbox_app)


# ---- rendering ---------------------------------------------------------------------------------


def _up_json(result: "UpResult") -> dict[str, Any]:
    d = result.descriptor
    return {
        "stateDir": str(result.state_dir),
        "alreadyRunning": result.already_running,
        "seconds": round(result.seconds, 2),
        "descriptorPath": str(result.state_dir / "descriptor.json"),
        "descriptor": d.public_dict(),
        "stack": result.stack.name,
        "stackFile": result.stack.source,
        "processes": [
            {"role": r.role, "pid": r.pid, "pgid": r.pgid}
            for r in (result.state.all_records() if result.state else [])
        ],
    }


def _render_up(result: "UpResult", fmt: Format) -> None:
    if result.already_running:
        output.warning(
            f"sandbox already running in {result.state_dir} (edge {result.descriptor.edge_url}); "
            "nothing started"
        )
    else:
        output.success(f"sandbox up in {result.seconds:.1f}s")
    if fmt is Format.json:
        output.json(_up_json(result))
        return
    from rich.table import Table

    d = result.descriptor
    # Descriptor text is shown as written, never as rich markup (console.esc).
    table = Table(title=f"sandbox · {esc(result.state_dir)}", title_justify="left")
    for column in ("service", "name", "id", "url"):
        table.add_column(column, overflow="fold")
    table.add_row("edge", esc(d.edge.name if d.edge else ""),
                  esc(d.edge.service_id if d.edge else ""), esc(d.edge_url))  # fmt: skip
    for inst in d.instances:
        table.add_row(f"api-{inst.number}", esc(inst.name), esc(inst.service_id), esc(inst.url))
    table.add_row("control plane", "Render API", "", esc(d.render_api_url or ""))
    output.out.print(table)
    output.info(f"descriptor: {result.state_dir / 'descriptor.json'}  (token inside, mode 0600)")
    if d.sandbox_timing:
        output.info(f"timing: {d.sandbox_timing} (sandbox/timing.py; `--timing fast|render`)")
    output.info(f"edge and verify settings: {esc(result.stack.describe())}")


def _render_status(result: "StatusResult", fmt: Format) -> None:
    if fmt is Format.json:
        output.json(
            {
                "stateDir": str(result.state_dir),
                "running": result.running,
                "processes": [
                    {"role": r.role, "pid": r.pid, "pgid": r.pgid, "alive": alive}
                    for r, alive in result.processes
                ],
                "health": [
                    {"name": p.name, "url": p.url, "ok": p.ok, "detail": p.detail}
                    for p in result.probes
                ],
                "descriptor": result.descriptor.public_dict() if result.descriptor else None,
            }
        )
        return
    if not result.processes:
        output.info(f"no sandbox in {result.state_dir}: start one with `koinonia-infra sandbox up`")
        return
    from rich.table import Table

    state = "running" if result.running else "stopped"
    table = Table(title=f"sandbox · {state} · {esc(result.state_dir)}", title_justify="left")
    for column in ("process", "pid", "state"):
        table.add_column(column)
    for record, alive in result.processes:
        table.add_row(
            esc(record.role), str(record.pid), "[green]up[/]" if alive else "[red]gone[/]"
        )
    output.out.print(table)
    if result.probes:
        health = Table(title="health", title_justify="left")
        for column in ("service", "url", "result"):
            health.add_column(column, overflow="fold")
        for probe in result.probes:
            mark = "[green]✓[/]" if probe.ok else "[red]✗[/]"
            health.add_row(esc(probe.name), esc(probe.url), f"{mark} {esc(probe.detail)}")
        output.out.print(health)


def _render_down(result: "DownResult") -> None:
    if result.was_running:
        roles = ", ".join(r.role for r in result.stopped)
        output.success(f"sandbox stopped ({roles})")
        if result.killed:
            output.warning("force-killed: " + ", ".join(r.role for r in result.killed))
    else:
        output.info(f"no running sandbox in {result.state_dir}")
    for path in result.purged:
        output.info(f"removed {path}")
    if not result.purged and result.state_dir.exists():
        output.info(f"data kept in {result.state_dir} (`sandbox down --purge` removes it)")
