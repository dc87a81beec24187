"""`koinonia-infra verify`: health, load distribution, latency, parity and deploy status."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from koinonia_infra.console import output

if TYPE_CHECKING:
    from rich.table import Table

    from koinonia_infra.verify.model import VerifyReport


class Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


def verify(
    *,
    stack: Annotated[
        str | None,
        typer.Option("--stack", "-s", help="Verify this stack's outputs (default prod)."),
    ] = None,
    outputs: Annotated[
        Path | None,
        typer.Option(
            "--outputs", metavar="FILE", help="A descriptor / `pulumi stack output --json` file."
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", metavar="sandbox", help="Verify the local sandbox.")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", metavar="DIR", help="The sandbox's state dir (with --target)."),
    ] = None,
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
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="table, json or markdown (the sign-off).")
    ] = Format.table,
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Also write the Markdown sign-off here."),
    ] = None,
    render_api_url: Annotated[
        str | None,
        typer.Option(
            "--render-api-url",
            metavar="URL",
            help="Render API base URL for RENDER_API_KEY (default: $RENDER_API_URL, else "
            "Render's; never a URL read from a descriptor).",
        ),
    ] = None,
) -> None:
    """Prove a deployment works: each instance's and the edge's /health, the load split through
    the edge, latency p50/p95/p99, error rate, config parity and deploy status (Render API).
    Thresholds: the runbook's defaults, then the stack's `koinonia:verify` (with --stack), then
    these flags. Exit 0 when every check passes, 1 when one fails, 2 on a usage or configuration
    error, 3 when the environment is missing something (e.g. the Pulumi CLI for --stack)."""
    from koinonia_infra.errors import OperationFailed
    from koinonia_infra.files import check_report_path
    from koinonia_infra.verify.runner import verify_deployment

    check_report_path(report)  # a typo'd directory fails now, not after the whole run

    result = verify_deployment(
        stack=stack,
        outputs=outputs,
        target=target,
        state_dir=state_dir,
        render_api_url=render_api_url,
        overrides={
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
        },
        on_progress=output.info,
    )
    if fmt is Format.json:
        output.json(result.to_json())
    elif fmt is Format.markdown:
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
    from koinonia_infra.ops.guard import suspended_hints, suspended_in_verify, target_flags

    flags = target_flags(stack=stack, outputs=outputs, target=target, state_dir=state_dir)
    for hint in suspended_hints(suspended_in_verify(result), flags):
        output.warning(hint)
    if not result.passed:
        failed = result.failed
        names = ", ".join(f"{c.id} {c.target}" for c in failed[:6])
        more = f" (+{len(failed) - 6} more)" if len(failed) > 6 else ""
        raise OperationFailed(f"verification failed: {len(failed)} check(s): {names}{more}")
    output.success(f"all checks passed in {result.duration_seconds:.1f}s")


def render_table(result: VerifyReport) -> Table:
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
