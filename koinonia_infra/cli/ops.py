"""Day-2 operations over Render's REST API: `status`, `drill failover`, `rollout`, `resume`.
Each command builds its inputs, calls one function of `koinonia_infra.ops`, renders the result."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from koinonia_infra.cli.options import (
    Format,
    FormatOption,
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
from koinonia_infra.errors import EnvironmentProblem, UsageError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from koinonia_infra.ops.common import Confirm
    from koinonia_infra.ops.resume import ResumeReport
    from koinonia_infra.ops.status import StatusReport
    from koinonia_infra.targets import DeploymentSource


ReportOpt = Annotated[
    Path | None,
    typer.Option("--report", help="Also write the report to FILE (Markdown; JSON if *.json)."),
]
RateOpt = Annotated[
    float, typer.Option("--rate", min=1, max=5000, help="Requests per second through the edge.")
]
# Deadlines: unset means the target's (Render's timings, koinonia:ops of the stack, or the
# sandbox's profile; see koinonia_infra/ops/timing.py).
SuspendTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--suspend-timeout",
        min=1,
        help="Seconds for the API to report the suspend (default: the target's timing).",
    ),
]
DeployTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--deploy-timeout",
        "--timeout",
        min=1,
        help="Seconds a deploy (a resume's too) may take to go live (default: the target's).",
    ),
]
RejoinTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--rejoin-timeout",
        min=1,
        help="Seconds for the edge to route to a healthy instance again (default: the target's).",
    ),
]


class _Report(Protocol):
    @property
    def exit_code(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...

    def to_json(self) -> dict[str, object]: ...


def source_of(
    stack: str | None,
    outputs: Path | None,
    target: str | None,
    state_dir: Path | None,
    render_api_url: str | None,
) -> "DeploymentSource":
    """The deployment the source options name (imported on use: `--help` stays fast)."""
    from koinonia_infra.targets import DeploymentSource

    return DeploymentSource(stack, outputs, target, state_dir, render_api_url)


def confirmer(yes: bool) -> "Confirm":
    """Ask before an operation that takes production capacity away; default No. Without a
    terminal nobody can answer, so `--yes` is required (a usage error, not a silent yes)."""

    def confirm(question: str, *, what: str) -> None:
        if yes:
            return
        if not output.interactive:
            raise UsageError(f"{what}: pass --yes to run it without a prompt")
        if not typer.confirm(question, default=False):
            raise typer.Exit(1)

    return confirm


def warn_suspended(suspended: list[tuple[int, str]], flags: str) -> None:
    """One line per suspended instance, with the command that brings it back."""
    from koinonia_infra.ops.guard import suspended_hints

    for hint in suspended_hints(suspended, flags):
        output.warning(hint)


def _check_report_path(path: Path | None) -> None:
    """Fail before the operation runs, not after, when its report could not be written."""
    from koinonia_infra.files import check_report_path

    check_report_path(path)


def _emit(
    report: _Report,
    fmt: ReportFormat,
    report_file: Path | None,
    markdown: str,
    table: "RenderableType",
    *,
    failure_note: str = "",
) -> None:
    """Print the report in `fmt`, write `--report`, and exit with the report's code."""
    import json

    if fmt == ReportFormat.json:
        output.json(report.to_json())
    elif fmt == ReportFormat.markdown:
        output.text(markdown)
    else:
        output.out.print(table)
    exit_code = report.exit_code
    if exit_code:
        output.error(f"{report.error or report.outcome}{failure_note}")
    if report_file is not None:
        from koinonia_infra.files import write_report

        data = json.dumps(report.to_json(), indent=2) + "\n"
        try:
            # Whole or not at all: a full disk leaves no empty or partial report behind.
            write_report(report_file, data if report_file.suffix == ".json" else markdown)
            output.info(f"report written to {report_file}")
        except EnvironmentProblem as exc:
            # The report is on stdout already; a pipeline that wanted the file must not pass.
            output.error(exc.message)
            exit_code = exit_code or exc.exit_code
    if exit_code:
        raise typer.Exit(exit_code)


def status(
    *,
    stack: StackSource = None,
    outputs: Outputs = None,
    target: Target = None,
    state_dir: StateDir = None,
    render_api_url: RenderApiUrl = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Show every service (instances and edge): suspended, latest deploy, /health and latency.

    Also checks the private network: each instance's Render slug against the address the edge
    dials, the edge's upstreams, and requests through the edge reaching each instance.
    """
    from koinonia_infra.ops.status import deployment_status

    source = source_of(stack, outputs, target, state_dir, render_api_url)
    report = deployment_status(source, on_warning=output.warning)
    _show_status(report, fmt, source.flags)


def _show_status(report: "StatusReport", fmt: Format, flags: str) -> None:
    from koinonia_infra.ops.status import private_network_line

    if fmt is Format.json:
        output.json(report.to_json())
    else:
        output.out.print(report.table())
    confirmed = private_network_line(report)
    if confirmed is not None:
        output.info(confirmed)
    for line in report.warnings:
        output.warning(line)
    warn_suspended(report.suspended_instances(), flags)


drill_app = typer.Typer(help="Rehearse failures against the live deployment.", no_args_is_help=True)


@drill_app.command("failover")
def drill_failover(
    *,
    instance: Annotated[int, typer.Option("--instance", help="Instance to suspend.")] = 1,
    duration: Annotated[
        float, typer.Option("--duration", min=1, help="Seconds the instance stays suspended.")
    ] = 10.0,
    rate: RateOpt = 200.0,
    stack: StackSource = None,
    outputs: Outputs = None,
    target: Target = None,
    state_dir: StateDir = None,
    render_api_url: RenderApiUrl = None,
    fmt: ReportFormatOption = ReportFormat.table,
    report_file: ReportOpt = None,
    yes: Yes = False,
    suspend_timeout: SuspendTimeoutOpt = None,
    deploy_timeout: DeployTimeoutOpt = None,
    rejoin_timeout: RejoinTimeoutOpt = None,
) -> None:
    """Suspend one instance under steady edge traffic, measure, resume it (always).

    Needs two healthy instances; checks against the runbook's failover checklist.
    """
    from koinonia_infra.ops.drill import drill_failover as run_drill
    from koinonia_infra.ops.render import drill_markdown, drill_renderable, drill_resume_note
    from koinonia_infra.ops.timing import TimingFlags

    _check_report_path(report_file)
    source = source_of(stack, outputs, target, state_dir, render_api_url)
    deadlines = TimingFlags(suspend_timeout, deploy_timeout, rejoin_timeout)
    report = run_drill(
        source,
        instance=instance,
        duration=duration,
        rate=rate,
        timing_flags=deadlines,
        confirm=confirmer(yes),
        on_event=output.info,
    )
    note = drill_resume_note(report, source.flags)
    markdown, table = drill_markdown(report), drill_renderable(report)
    _emit(report, fmt, report_file, markdown, table, failure_note=note)


def rollout(
    *,
    order: Annotated[
        str | None,
        typer.Option(
            "--order", help="Instances in deploy order, e.g. 2,1 (default: highest first)."
        ),
    ] = None,
    deploy_timeout: DeployTimeoutOpt = None,
    rejoin_timeout: RejoinTimeoutOpt = None,
    overlap: Annotated[
        float | None,
        typer.Option(
            "--overlap",
            min=0,
            help="Seconds an old instance keeps serving after its new deploy is live "
            "(default: the target's; Render: 60).",
        ),
    ] = None,
    rate: RateOpt = 200.0,
    stack: StackSource = None,
    outputs: Outputs = None,
    target: Target = None,
    state_dir: StateDir = None,
    render_api_url: RenderApiUrl = None,
    fmt: ReportFormatOption = ReportFormat.table,
    report_file: ReportOpt = None,
    yes: Yes = False,
) -> None:
    """Redeploy one instance at a time, health-gated, under measured steady traffic.

    A failed deploy stops the rollout (exit 1); the remaining instances stay untouched.
    """
    from koinonia_infra.ops.render import rollout_markdown, rollout_renderable
    from koinonia_infra.ops.rollout import rollout_deployment
    from koinonia_infra.ops.timing import TimingFlags

    _check_report_path(report_file)
    source = source_of(stack, outputs, target, state_dir, render_api_url)
    deadlines = TimingFlags(None, deploy_timeout, rejoin_timeout, overlap)
    report = rollout_deployment(
        source,
        order=order,
        rate=rate,
        timing_flags=deadlines,
        confirm=confirmer(yes),
        on_event=output.info,
    )
    _emit(report, fmt, report_file, rollout_markdown(report), rollout_renderable(report))


def resume(
    number: Annotated[int, typer.Argument(metavar="N", help="The instance number to resume.")],
    *,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=1,
            help="Seconds to wait until it is healthy and its resume deploy is live "
            "(default: from the target's timings; on Render a resume is a full deploy).",
        ),
    ] = None,
    stack: StackSource = None,
    outputs: Outputs = None,
    target: Target = None,
    state_dir: StateDir = None,
    render_api_url: RenderApiUrl = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Resume instance N (e.g. left suspended by a killed drill) and wait until it is healthy.

    Safe to run twice: an instance that is not suspended is only checked. Exit 0 healthy again,
    1 not healthy within --timeout, 2 usage, 3 Render API refused or unreachable.
    """
    from koinonia_infra.ops.resume import resume_instance

    source = source_of(stack, outputs, target, state_dir, render_api_url)
    report = resume_instance(source, number, timeout=timeout, on_event=output.info)
    _show_resume(report, fmt)


def _show_resume(report: "ResumeReport", fmt: Format) -> None:
    if fmt is Format.json:
        output.json(report.to_json())
    elif report.healthy:
        output.success(
            f"api-{report.instance} ({report.service}) "
            f"{'resumed and ' if report.resume_requested else ''}healthy"
        )
    if report.exit_code:
        output.error(report.error or report.outcome)
        raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("status")(status)
    app.add_typer(drill_app, name="drill")
    app.command("rollout")(rollout)
    app.command("resume")(resume)
