"""Day-2 operations over Render's REST API: `status`, `drill failover`, `rollout`."""

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from koinonia_infra.console import output
from koinonia_infra.errors import EnvironmentProblem, UsageError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from koinonia_infra.descriptor import Descriptor
    from koinonia_infra.render_api import RenderClient


class Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


class StatusFormat(StrEnum):
    table = "table"
    json = "json"


StackOpt = Annotated[
    str | None, typer.Option("--stack", help="Stack whose outputs describe the deployment.")
]
OutputsOpt = Annotated[
    Path | None,
    typer.Option("--outputs", help="Deployment descriptor or `pulumi stack output --json` file."),
]
TargetOpt = Annotated[
    str | None, typer.Option("--target", help="`sandbox`: the local sandbox's deployment.")
]
StateDirOpt = Annotated[
    Path | None, typer.Option("--state-dir", help="Sandbox state dir (with --target sandbox).")
]
ApiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--render-api-url",
        help="Render API base URL for RENDER_API_KEY (default: $RENDER_API_URL, else Render's; "
        "never a URL read from a descriptor).",
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option("--report", help="Also write the report to FILE (Markdown; JSON if *.json)."),
]
FormatOpt = Annotated[Format, typer.Option("--format", help="table, json or markdown.")]
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


def _descriptor(
    stack: str | None, outputs: Path | None, target: str | None, state_dir: Path | None
) -> "Descriptor":
    from koinonia_infra.targets import resolve_descriptor

    return resolve_descriptor(stack=stack, outputs=outputs, target=target, state_dir=state_dir)


def _client(
    descriptor: "Descriptor", api_url: str | None, *, required: str | None
) -> "RenderClient":
    from koinonia_infra.render_api import RenderClient

    client = RenderClient.for_descriptor(descriptor, api_url)
    if client is None:
        raise EnvironmentProblem(
            f"{required} needs the Render API: set RENDER_API_KEY (or RENDER_APIKEY)"
        )
    return client


def _confirm(yes: bool, question: str, *, what: str) -> None:
    """Ask before an operation that takes production capacity away; default No. Without a
    terminal nobody can answer, so `--yes` is required (a usage error, not a silent yes)."""
    if yes:
        return
    if not output.interactive:
        raise UsageError(f"{what}: pass --yes to run it without a prompt")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


def _flags(
    stack: str | None, outputs: Path | None, target: str | None, state_dir: Path | None
) -> str:
    from koinonia_infra.ops.guard import target_flags

    return target_flags(stack=stack, outputs=outputs, target=target, state_dir=state_dir)


def _check_report_path(path: Path | None) -> None:
    """Fail before the operation runs, not after, when its report could not be written."""
    from koinonia_infra.files import check_report_path

    check_report_path(path)


def _emit(
    report: _Report,
    fmt: Format,
    report_file: Path | None,
    markdown: str,
    table: "RenderableType",
    *,
    failure_note: str = "",
) -> None:
    """Print the report in `fmt`, write `--report`, and exit with the report's code."""
    import json

    if fmt is Format.json:
        output.json(report.to_json())
    elif fmt is Format.markdown:
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
    stack: StackOpt = None,
    outputs: OutputsOpt = None,
    target: TargetOpt = None,
    state_dir: StateDirOpt = None,
    render_api_url: ApiUrlOpt = None,
    fmt: Annotated[StatusFormat, typer.Option("--format", help="table or json.")] = (
        StatusFormat.table
    ),
) -> None:
    """Show every service (instances and edge): suspended, latest deploy, /health and latency.

    Also checks the private network: each instance's Render slug against the address the edge
    dials, the edge's upstreams, and requests through the edge reaching each instance.
    """
    from koinonia_infra.measure.health import probe_health
    from koinonia_infra.ops.status import (
        collect_status,
        private_network_line,
        sample_through_edge,
    )
    from koinonia_infra.render_api import RenderClient

    descriptor = _descriptor(stack, outputs, target, state_dir)
    client = RenderClient.for_descriptor(descriptor, render_api_url)
    if client is None:
        output.warning("no Render API key (RENDER_API_KEY): showing /health only")
    try:
        report = collect_status(descriptor, client, probe_health, sample_through_edge)
    finally:
        if client is not None:
            client.close()
    if fmt is StatusFormat.json:
        output.json(report.to_json())
    else:
        output.out.print(report.table())
    confirmed = private_network_line(report)
    if confirmed is not None:
        output.info(confirmed)
    for line in report.warnings:
        output.warning(line)
    _warn_suspended(
        [(int(s.role[4:]), s.name) for s in report.services if s.suspended and s.role != "edge"],
        _flags(stack, outputs, target, state_dir),
    )


def _warn_suspended(suspended: list[tuple[int, str]], flags: str) -> None:
    from koinonia_infra.ops.guard import suspended_hints

    for hint in suspended_hints(suspended, flags):
        output.warning(hint)


drill_app = typer.Typer(help="Rehearse failures against the live deployment.", no_args_is_help=True)


@drill_app.command("failover")
def drill_failover(
    *,
    instance: Annotated[int, typer.Option("--instance", help="Instance to suspend.")] = 1,
    duration: Annotated[
        float, typer.Option("--duration", min=1, help="Seconds the instance stays suspended.")
    ] = 10.0,
    rate: RateOpt = 200.0,
    stack: StackOpt = None,
    outputs: OutputsOpt = None,
    target: TargetOpt = None,
    state_dir: StateDirOpt = None,
    render_api_url: ApiUrlOpt = None,
    fmt: FormatOpt = Format.table,
    report_file: ReportOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    suspend_timeout: SuspendTimeoutOpt = None,
    deploy_timeout: DeployTimeoutOpt = None,
    rejoin_timeout: RejoinTimeoutOpt = None,
) -> None:
    """Suspend one instance under steady edge traffic, measure, resume it (always).

    Needs two healthy instances; checks against the runbook's failover checklist.
    """
    from koinonia_infra.measure.health import probe_health
    from koinonia_infra.ops.common import SteadyRun, sigterm_as_interrupt
    from koinonia_infra.ops.drill import run_failover_drill
    from koinonia_infra.ops.guard import deployment_lock
    from koinonia_infra.ops.render import drill_markdown, drill_renderable
    from koinonia_infra.ops.timing import resolve_timing

    _check_report_path(report_file)
    descriptor = _descriptor(stack, outputs, target, state_dir)
    inst = descriptor.instance(instance)
    timing = resolve_timing(
        descriptor,
        from_stack=(stack or "prod") if outputs is None and target is None else None,
        suspend_timeout=suspend_timeout,
        deploy_timeout=deploy_timeout,
        rejoin_timeout=rejoin_timeout,
        state_dir=state_dir,
    )
    client = _client(descriptor, render_api_url, required="drill failover")
    _confirm(
        yes,
        f"Suspend api-{instance} ({inst.name}) for {duration:g}s under {rate:g} req/s?",
        what=f"drill failover suspends api-{instance} ({inst.name})",
    )
    output.info(timing.summary())
    lock = deployment_lock(descriptor, f"drill failover --instance {instance}")
    with sigterm_as_interrupt(), client, lock:
        report = run_failover_drill(
            descriptor,
            client,
            instance=instance,
            duration=duration,
            rate=rate,
            start_traffic=SteadyRun,
            probe=probe_health,
            on_event=output.info,
            resume_flags=_flags(stack, outputs, target, state_dir),
            timing=timing,
        )
    resumed = (
        "resumed"
        if report.resumed
        else f"NOT resumed: run `koinonia-infra resume {instance}"
        f"{_flags(stack, outputs, target, state_dir)}`"
    )
    _emit(
        report,
        fmt,
        report_file,
        drill_markdown(report),
        drill_renderable(report),
        failure_note=f" (api-{instance} {resumed})",
    )


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
    stack: StackOpt = None,
    outputs: OutputsOpt = None,
    target: TargetOpt = None,
    state_dir: StateDirOpt = None,
    render_api_url: ApiUrlOpt = None,
    fmt: FormatOpt = Format.table,
    report_file: ReportOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Redeploy one instance at a time, health-gated, under measured steady traffic.

    A failed deploy stops the rollout (exit 1); the remaining instances stay untouched.
    """
    from koinonia_infra.measure.health import probe_health
    from koinonia_infra.ops.common import SteadyRun, sigterm_as_interrupt
    from koinonia_infra.ops.guard import deployment_lock
    from koinonia_infra.ops.render import rollout_markdown, rollout_renderable
    from koinonia_infra.ops.rollout import parse_order, run_rollout
    from koinonia_infra.ops.timing import resolve_timing

    _check_report_path(report_file)
    descriptor = _descriptor(stack, outputs, target, state_dir)
    sequence = parse_order(order, descriptor)
    timing = resolve_timing(
        descriptor,
        from_stack=(stack or "prod") if outputs is None and target is None else None,
        suspend_timeout=None,
        deploy_timeout=deploy_timeout,
        rejoin_timeout=rejoin_timeout,
        overlap=overlap,
        state_dir=state_dir,
    )
    client = _client(descriptor, render_api_url, required="rollout")
    names = ", ".join(f"api-{n}" for n in sequence)
    _confirm(
        yes,
        f"Redeploy {names} one at a time under {rate:g} req/s?",
        what=f"rollout redeploys {names}",
    )

    output.info(timing.summary())

    def refresh() -> "Descriptor":
        return _descriptor(stack, outputs, target, state_dir)

    with sigterm_as_interrupt(), client, deployment_lock(descriptor, "rollout"):
        report = run_rollout(
            descriptor,
            client,
            order=sequence,
            start_traffic=SteadyRun,
            probe=probe_health,
            rate=rate,
            timing=timing,
            on_event=output.info,
            refresh=refresh if target is not None or outputs is not None else None,
            resume_flags=_flags(stack, outputs, target, state_dir),
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
    stack: StackOpt = None,
    outputs: OutputsOpt = None,
    target: TargetOpt = None,
    state_dir: StateDirOpt = None,
    render_api_url: ApiUrlOpt = None,
    fmt: Annotated[StatusFormat, typer.Option("--format", help="table or json.")] = (
        StatusFormat.table
    ),
) -> None:
    """Resume instance N (e.g. left suspended by a killed drill) and wait until it is healthy.

    Safe to run twice: an instance that is not suspended is only checked. Exit 0 healthy again,
    1 not healthy within --timeout, 2 usage, 3 Render API refused or unreachable.
    """
    from koinonia_infra.measure.health import probe_health
    from koinonia_infra.ops.resume import run_resume
    from koinonia_infra.ops.timing import resolve_timing

    descriptor = _descriptor(stack, outputs, target, state_dir)
    descriptor.instance(number)
    if timeout is None:
        timing = resolve_timing(
            descriptor,
            from_stack=(stack or "prod") if outputs is None and target is None else None,
            state_dir=state_dir,
        )
        timeout = timing.resume_timeout_seconds
    client = _client(descriptor, render_api_url, required="resume")
    with client:
        report = run_resume(
            descriptor, client, number, probe=probe_health, timeout=timeout, on_event=output.info
        )
    if fmt is StatusFormat.json:
        output.json(report.to_json())
    elif report.healthy:
        output.success(
            f"api-{number} ({report.service}) "
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
