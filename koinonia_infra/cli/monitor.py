"""`koinonia-infra monitor`: the runbook's Step 8 on one screen, and its alert rules."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from koinonia_infra.cli.ops import ApiUrlOpt, OutputsOpt, StackOpt, StateDirOpt, TargetOpt
from koinonia_infra.console import output


class MonitorFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


def monitor(
    *,
    stack: StackOpt = None,
    outputs: OutputsOpt = None,
    target: TargetOpt = None,
    state_dir: StateDirOpt = None,
    render_api_url: ApiUrlOpt = None,
    since: Annotated[
        str, typer.Option("--since", metavar="DURATION", help="The window: 15m, 1h, 1h30m, 2d.")
    ] = "1h",
    fmt: Annotated[
        MonitorFormat, typer.Option("--format", "-f", help="table, json or markdown.")
    ] = MonitorFormat.table,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 1 when an alert rule of koinonia:monitor fires."),
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh the screen in place until interrupted.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", metavar="SECONDS", min=1, max=3600, help="--watch refresh."),
    ] = 15.0,
    iterations: Annotated[
        int,
        typer.Option(
            "--iterations", metavar="N", min=0, help="--watch: stop after N refreshes (0: never)."
        ),
    ] = 0,
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Also write the Markdown report here."),
    ] = None,
) -> None:
    """Per instance and the edge over a window: CPU and memory (share of the plan), requests
    and their share, p50/p95/p99, 5xx rate, with sparklines; Postgres and Key Value; recent
    events and error-level log lines. `--check` exits 1 naming every rule that fired (rule,
    target, measured value, threshold); rules: the stack's `koinonia:monitor`."""
    from koinonia_infra.errors import OperationFailed, UsageError
    from koinonia_infra.monitor.render import render_markdown, render_screen
    from koinonia_infra.monitor.run import MonitorTarget, parse_since, run_monitor

    if watch and fmt is not MonitorFormat.table:
        raise UsageError(f"--watch redraws the screen; --format {fmt.value} goes without it")
    window = parse_since(since)
    where = MonitorTarget(stack, outputs, target, state_dir, render_api_url)
    if watch:
        from koinonia_infra.monitor.watch import watch_loop

        result = watch_loop(
            lambda: run_monitor(where, window), render_screen, interval, iterations or None
        )
    else:
        result = run_monitor(where, window)
        if fmt is MonitorFormat.json:
            output.json(result.to_json())
        elif fmt is MonitorFormat.markdown:
            output.text(render_markdown(result))
        else:
            from koinonia_infra.console import make_console

            # Off a terminal (a CI log) rich would assume 80 columns and fold every cell.
            screen = output.out if output.out.is_terminal else make_console(width=160)
            screen.print(render_screen(result), soft_wrap=False)
    if report is not None and result is not None:
        from koinonia_infra.files import write_report

        write_report(report, render_markdown(result))
        output.info(f"report written to {report}")
    if check and result is not None and result.alerts:
        names = "; ".join(a.message for a in result.alerts[:6])
        more = f" (+{len(result.alerts) - 6} more)" if len(result.alerts) > 6 else ""
        raise OperationFailed(f"{len(result.alerts)} alert rule(s) fired: {names}{more}")


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
