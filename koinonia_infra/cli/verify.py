"""`koinonia-infra verify`: health, load distribution, latency, parity and deploy status."""

import contextlib
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
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="--capacity on a real deployment: do not ask first."),
    ] = False,
) -> None:
    """Prove a deployment works: each instance's and the edge's /health, the load split through
    the edge, latency p50/p95/p99, error rate, config parity and deploy status (Render API).
    Thresholds: the runbook's defaults, then the stack's `koinonia:verify` (with --stack), then
    these flags. Exit 0 when every check passes, 1 when one fails, 2 on a usage or configuration
    error, 3 when the environment is missing something (e.g. the Pulumi CLI for --stack)."""
    from koinonia_infra.errors import OperationFailed, UsageError
    from koinonia_infra.files import check_report_path
    from koinonia_infra.verify.runner import verify_deployment

    check_report_path(report)  # a typo'd directory fails now, not after the whole run
    if capacity:
        _capacity(
            stack=stack,
            outputs=outputs,
            target=target,
            state_dir=state_dir,
            render_api_url=render_api_url,
            p95_ms=p95_ms,
            max_concurrency=max_concurrency,
            max_seconds=max_seconds,
            compare_single=compare_single,
            path=capacity_path,
            yes=yes,
            fmt=fmt,
            report=report,
        )
        return
    if compare_single or max_concurrency is not None or max_seconds is not None:
        raise UsageError("--compare-single, --max-concurrency and --max-seconds go with --capacity")

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


def _capacity(
    *,
    stack: str | None,
    outputs: Path | None,
    target: str | None,
    state_dir: Path | None,
    render_api_url: str | None,
    p95_ms: float | None,
    max_concurrency: int | None,
    max_seconds: float | None,
    compare_single: bool,
    path: str,
    yes: bool,
    fmt: Format,
    report: Path | None,
) -> None:
    """`verify --capacity`: ceilings from the flags, else the stack file, else the defaults;
    a real deployment is asked first (default No), as the drill asks."""
    from koinonia_infra.cli.ops import _client, _confirm, _flags
    from koinonia_infra.errors import UsageError
    from koinonia_infra.measure.health import probe_health
    from koinonia_infra.ops.common import sigterm_as_interrupt
    from koinonia_infra.ops.guard import deployment_lock
    from koinonia_infra.targets import resolve_descriptor
    from koinonia_infra.verify.capacity import (
        markdown,
        plot,
        run_capacity,
        settings_for,
        summary_lines,
    )

    from_stack = outputs is None and target is None
    settings = settings_for((stack or "prod") if from_stack else None)
    if target == "sandbox":
        from koinonia_infra.sandbox.lifecycle import resolve_state_dir
        from koinonia_infra.sandbox.stack import read_sandbox_stack

        # The ceilings and threshold of the stack the sandbox runs (`sandbox up --stack`).
        settings = read_sandbox_stack(resolve_state_dir(state_dir)).verify
    descriptor = resolve_descriptor(
        stack=stack, outputs=outputs, target=target, state_dir=state_dir
    )
    threshold = p95_ms if p95_ms is not None else settings.p95_ms
    ceiling = max_concurrency if max_concurrency is not None else settings.capacity_max_concurrency
    seconds = max_seconds if max_seconds is not None else settings.capacity_max_seconds
    client = (
        _client(descriptor, render_api_url, required="--compare-single") if compare_single else None
    )
    if not path.startswith("/"):
        raise UsageError(f"--capacity-path {path!r}: must start with '/'")
    if descriptor.sandbox_timing is None:
        # Load on a real deployment is a risk of its own: its users share the capacity measured.
        single = ", then with all but one instance suspended" if compare_single else ""
        _confirm(
            yes,
            f"Load {descriptor.edge_url} up to {ceiling} concurrent requests for up to "
            f"{seconds:g}s{single}?",
            what="verify --capacity loads the deployment",
        )
    flags = _flags(stack, outputs, target, state_dir)
    lock = (
        deployment_lock(descriptor, "verify --capacity --compare-single")
        if compare_single
        else contextlib.nullcontext()
    )
    with sigterm_as_interrupt(), lock, client or contextlib.nullcontext():
        result = run_capacity(
            descriptor,
            p95_ms=threshold,
            max_concurrency=ceiling,
            max_seconds=seconds,
            compare_single=compare_single,
            path=path,
            client=client,
            probe=probe_health,
            on_progress=output.info,
            resume_flags=flags,
        )
    text = markdown(result)
    if fmt is Format.json:
        output.json(result.to_json())
    elif fmt is Format.markdown:
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
