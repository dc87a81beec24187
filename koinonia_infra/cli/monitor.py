"""`koinonia-infra monitor`: the runbook's Step 8 on one screen, and its alert rules."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from koinonia_infra.cli.ops import source_of
from koinonia_infra.cli.options import (
    Outputs,
    RenderApiUrl,
    ReportFormat,
    ReportFormatOption,
    StackSource,
    StateDir,
    Target,
)
from koinonia_infra.console import output

if TYPE_CHECKING:
    from datetime import timedelta

    from koinonia_infra.monitor.model import MonitorReport
    from koinonia_infra.targets import DeploymentSource


def monitor(
    *,
    stack: StackSource = None,
    outputs: Outputs = None,
    target: Target = None,
    state_dir: StateDir = None,
    render_api_url: RenderApiUrl = None,
    since: Annotated[
        str, typer.Option("--since", metavar="DURATION", help="The window: 15m, 1h, 1h30m, 2d.")
    ] = "1h",
    fmt: ReportFormatOption = ReportFormat.table,
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
    from koinonia_infra.errors import UsageError
    from koinonia_infra.monitor.run import parse_since

    if watch and fmt is not ReportFormat.table:
        raise UsageError(f"--watch redraws the screen; --format {fmt.value} goes without it")
    window = parse_since(since)
    source = source_of(stack, outputs, target, state_dir, render_api_url)
    if watch:
        result = _watch(source, window, interval, iterations or None)
    else:
        result = _show(source, window, fmt)
    _finish(result, report, check)


def _watch(
    source: "DeploymentSource", window: "timedelta", interval: float, iterations: int | None
) -> "MonitorReport | None":
    """The screen redrawn every `interval` seconds; the last report read."""
    from koinonia_infra.monitor.render import render_screen
    from koinonia_infra.monitor.run import run_monitor
    from koinonia_infra.monitor.watch import watch_loop

    return watch_loop(lambda: run_monitor(source, window), render_screen, interval, iterations)


def _show(source: "DeploymentSource", window: "timedelta", fmt: ReportFormat) -> "MonitorReport":
    from koinonia_infra.monitor.render import render_markdown, render_screen
    from koinonia_infra.monitor.run import run_monitor

    result = run_monitor(source, window)
    if fmt is ReportFormat.json:
        output.json(result.to_json())
    elif fmt is ReportFormat.markdown:
        output.text(render_markdown(result))
    else:
        from koinonia_infra.console import make_console

        # Off a terminal (a CI log) rich would assume 80 columns and fold every cell.
        screen = output.out if output.out.is_terminal else make_console(width=160)
        screen.print(render_screen(result), soft_wrap=False)
    return result


def _finish(result: "MonitorReport | None", report: Path | None, check: bool) -> None:
    """Write `--report`; with `--check`, fail naming the rules that fired."""
    from koinonia_infra.errors import OperationFailed
    from koinonia_infra.monitor.render import render_markdown

    if result is None:
        return
    if report is not None:
        from koinonia_infra.files import write_report

        write_report(report, render_markdown(result))
        output.info(f"report written to {report}")
    if check and result.alerts:
        names = "; ".join(a.message for a in result.alerts[:6])
        more = f" (+{len(result.alerts) - 6} more)" if len(result.alerts) > 6 else ""
        raise OperationFailed(f"{len(result.alerts)} alert rule(s) fired: {names}{more}")


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
