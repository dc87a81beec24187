"""`koinonia-infra verify`: health, load distribution, latency, parity and deploy status."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from koinonia_infra.cli.ops import confirmer, source_of, warn_suspended
from koinonia_infra.cli.options import (
    Outputs,
    RenderApiUrl,
    ReportFormat,
    ReportFormatOption,
    StackSource,
    StateDir,
    Target,
    Yes,
)
from koinonia_infra.console import output

if TYPE_CHECKING:
    from rich.table import Table

    from koinonia_infra.targets import DeploymentSource
    from koinonia_infra.verify.capacity import CapacityReport
    from koinonia_infra.verify.model import VerifyReport


def verify(
    *,
    stack: StackSource = None,
    outputs: Outputs = None,
    target: Target = None,
    state_dir: StateDir = None,
    requests: Annotated[
        int | None,
        typer.Option("--requests", "-n", min=1, max=1_000_000, help="Requests through the edge."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, max=1024, help="Requests in flight at once."),
    ] = None,
    p95_ms: Annotated[
        float | None,
        typer.Option(
            "--p95-ms",
            metavar="MS",
            min=0.001,
            help="p95 latency limit (default 250; stack: verify.p95Ms).",
        ),
    ] = None,
    share_tolerance: Annotated[
        float | None,
        typer.Option(
            "--share-tolerance",
            metavar="POINTS",
            min=0.001,
            max=100,
            help="Allowed distance of each instance's share from 100/N, in percentage points "
            "(default 10; stack: verify.shareTolerancePoints).",
        ),
    ] = None,
    p50_ratio: Annotated[
        float | None,
        typer.Option(
            "--p50-ratio",
            metavar="RATIO",
            min=1,
            help="Slowest p50 ÷ fastest p50 allowed (default 2; stack: verify.p50Ratio).",
        ),
    ] = None,
    max_error_rate: Annotated[
        float | None,
        typer.Option(
            "--max-error-rate",
            metavar="PERCENT",
            min=0,
            max=100,
            help="Failed requests allowed through the edge (default 0.1; "
            "stack: verify.maxErrorRatePercent).",
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            metavar="NAME",
            help="The `environment` every /health must report (default: the deployment's; "
            "stack: verify.environment).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0.001,
            max=300,
            help="Deadline of each request: connect, headers and body (default 10, longer than "
            "the edge's 5 s retry window so its own 503 is seen as such).",
        ),
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(
            "--deadline",
            metavar="SECONDS",
            min=1,
            max=86_400,
            help="Limit of the whole run, --wait included (default: --wait plus what a passing "
            "run needs at these settings; see docs/verify.md).",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            min=0,
            max=86_400,
            help="Re-run failing checks with backoff until all pass or this deadline.",
        ),
    ] = 0.0,
    fmt: ReportFormatOption = ReportFormat.table,
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Also write the Markdown sign-off here."),
    ] = None,
    render_api_url: RenderApiUrl = None,
    capacity: Annotated[
        bool,
        typer.Option(
            "--capacity",
            help="Instead of the checks: ramp concurrency through the edge until p95 passes "
            "--p95-ms or a request fails, and report the knee (concurrency, req/s).",
        ),
    ] = False,
    compare_single: Annotated[
        bool,
        typer.Option(
            "--compare-single",
            help="With --capacity: ramp again with all instances but the first suspended "
            "(always resumed) and report the ratio N ÷ 1.",
        ),
    ] = False,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency",
            min=1,
            max=1024,
            help="Ceiling of the --capacity ramp (default 64; stack: "
            "verify.capacityMaxConcurrency).",
        ),
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-seconds",
            min=1,
            max=3600,
            help="Longest a --capacity ramp may run (default 120; stack: "
            "verify.capacityMaxSeconds).",
        ),
    ] = None,
    capacity_path: Annotated[
        str,
        typer.Option(
            "--capacity-path",
            metavar="PATH",
            help="With --capacity: the GET path loaded through the edge (default /health; a "
            "representative read endpoint says more).",
        ),
    ] = "/health",
    yes: Yes = False,
) -> None:
    """Prove a deployment works: each instance's and the edge's /health, the load split through
    the edge, latency p50/p95/p99, error rate, config parity and deploy status (Render API).
    Thresholds: the runbook's defaults, then the stack's `koinonia:verify` (with --stack), then
    these flags. Exit 0 when every check passes, 1 when one fails, 2 on a usage or configuration
    error, 3 when the environment is missing something (e.g. the Pulumi CLI for --stack)."""
    from koinonia_infra.errors import UsageError
    from koinonia_infra.files import check_report_path
    from koinonia_infra.verify.capacity import measure_capacity
    from koinonia_infra.verify.runner import verify_deployment

    check_report_path(report)  # a typo'd directory fails now, not after the whole run
    source = source_of(stack, outputs, target, state_dir, render_api_url)
    if capacity:
        capacity_report = measure_capacity(
            source,
            p95_ms=p95_ms,
            max_concurrency=max_concurrency,
            max_seconds=max_seconds,
            compare_single=compare_single,
            path=capacity_path,
            confirm=confirmer(yes),
            on_progress=output.info,
        )
        _show_capacity(capacity_report, fmt, report)
        return
    if compare_single or max_concurrency is not None or max_seconds is not None:
        raise UsageError("--compare-single, --max-concurrency and --max-seconds go with --capacity")
    overrides = {
        "requests": requests,
        "concurrency": concurrency,
        "p95_ms": p95_ms,
        "share_tolerance_points": share_tolerance,
        "p50_ratio": p50_ratio,
        "max_error_rate_percent": max_error_rate,
        "environment": environment,
        "timeout_seconds": timeout,
        "deadline_seconds": deadline,
        "wait_seconds": wait,
    }
    result = verify_deployment(source=source, overrides=overrides, on_progress=output.info)
    _show_verify(result, fmt, report, source)


def _show_verify(
    result: "VerifyReport", fmt: ReportFormat, report: Path | None, source: "DeploymentSource"
) -> None:
    """The sign-off in `fmt`, `--report`, the suspended instances; exit 1 naming what failed."""
    from koinonia_infra.errors import OperationFailed
    from koinonia_infra.ops.guard import suspended_in_verify

    if fmt is ReportFormat.json:
        output.json(result.to_json())
    elif fmt is ReportFormat.markdown:
        output.text(result.to_markdown())
    else:
        output.out.print(render_table(result), soft_wrap=False)
        for check in result.failed:
            output.text(f"✗ {check.id} {check.target}: {check.reason}")
    if report is not None:
        from koinonia_infra.files import write_report

        # After the results are shown: a full disk costs the file (exit 3, no empty or partial
        # sign-off left for a pipeline to upload), not the measurements.
        write_report(report, result.to_markdown())
        output.info(f"sign-off written to {report}")
    warn_suspended(suspended_in_verify(result), source.flags)
    if not result.passed:
        failed = result.failed
        names = ", ".join(f"{c.id} {c.target}" for c in failed[:6])
        more = f" (+{len(failed) - 6} more)" if len(failed) > 6 else ""
        raise OperationFailed(f"verification failed: {len(failed)} check(s): {names}{more}")
    output.success(f"all checks passed in {result.duration_seconds:.1f}s")


def _show_capacity(result: "CapacityReport", fmt: ReportFormat, report: Path | None) -> None:
    """`verify --capacity`'s report in `fmt` and `--report`; exit with the run's code."""
    from koinonia_infra.verify.capacity import markdown, plot, summary_lines

    text = markdown(result)
    if fmt is ReportFormat.json:
        output.json(result.to_json())
    elif fmt is ReportFormat.markdown:
        output.text(text)
    else:
        for line in [*plot(result), "", *summary_lines(result)]:
            output.text(line)
    if report is not None:
        from koinonia_infra.files import write_report

        write_report(report, text)
        output.info(f"capacity report written to {report}")
    if result.exit_code:
        output.error(result.error or result.outcome)
        raise typer.Exit(result.exit_code)


def render_table(result: "VerifyReport") -> "Table":
    from rich.markup import escape
    from rich.table import Table

    style = {"pass": "[green]PASS[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]SKIP[/]"}
    table = Table(title=f"verify {escape(str(result.deployment.get('edgeUrl')))}")
    for column in ("check", "target", "result", "measured", "threshold"):
        table.add_column(column)
    for c in result.checks:
        measured = c.measured if c.status != "skip" else (c.reason or c.measured)
        table.add_row(
            escape(c.name), escape(c.target), style[c.status], escape(measured), escape(c.threshold)
        )
    return table


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("verify")(verify)
