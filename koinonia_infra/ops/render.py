"""Tables (rich) and Markdown for the drill and rollout reports."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from koinonia_infra.console import esc
from koinonia_infra.ops.common import Check, TrafficSummary
from koinonia_infra.ops.drill import DrillReport
from koinonia_infra.ops.logs import LogScan
from koinonia_infra.ops.rollout import RolloutReport
from koinonia_infra.textsafe import md

# Names, errors and measurements come from descriptors and Render's API: shown as written, never
# as rich markup (`esc`) or Markdown structure (`md`).


_MARK_STYLE = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[dim]n/a[/]"}
_MD_BOX = {True: "[x]", False: "[ ]", None: "[ ]"}


def _checks_table(title: str, checks: list[Check]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("check", "result", "measured", "threshold"):
        table.add_column(col, overflow="fold")
    for c in checks:
        mark = _MARK_STYLE[c.passed] if c.gating else f"{_MARK_STYLE[c.passed]} [dim](info)[/]"
        table.add_row(esc(c.name), mark, esc(c.measured), esc(c.threshold))
    return table


def _traffic_table(t: TrafficSummary) -> Table:
    table = Table(title="traffic through the edge", title_justify="left")
    table.add_column("measure")
    table.add_column("value", overflow="fold")
    rows = _traffic_rows(t)
    for k, v in rows:
        table.add_row(esc(k), esc(v))
    return table


def _traffic_rows(t: TrafficSummary) -> list[tuple[str, str]]:
    served = ", ".join(f"{k}: {v}" for k, v in t.served_by.items()) or "-"
    errors = "; ".join(f"{v}x {k}" for k, v in t.errors.items()) or "-"
    return [
        ("requests (failed)", f"{t.total_requests} ({t.failed_requests})"),
        ("rate achieved / target", f"{t.achieved_rate:g} / {t.target_rate:g} req/s"),
        ("sends missed by the generator", str(t.missed_sends)),
        ("duration", f"{t.duration_seconds:g} s"),
        (
            "latency p50 / p95 / p99 / max",
            f"{_num(t.p50_latency_ms)} / {_num(t.p95_latency_ms)} / {_num(t.p99_latency_ms)} / "
            f"{_num(t.max_latency_ms)} ms",
        ),
        ("served by", served),
        ("errors", errors),
    ]


def _headline(outcome: str, what: str) -> str:
    return {
        "passed": f"[green]{what} passed[/]",
        "failed": f"[red]{what} failed[/]",
        "interrupted": f"[yellow]{what} interrupted[/]",
        "error": f"[red]{what} stopped by an error[/]",
    }[outcome]


def drill_renderable(r: DrillReport) -> Group:
    k = r.instance
    resumed = "[green]yes[/]" if r.resumed else "[bold red]NO: resume it by hand[/]"
    lines = [
        f"{_headline(r.outcome, 'failover drill')}: api-{k} ({esc(r.service)}, "
        f"{esc(r.service_id)})",
        f"api-{k} resumed: {resumed}",
    ]
    if r.error:
        lines.append(f"[red]{esc(r.error)}[/]")
    table = _traffic_table(r)
    table.add_row("seconds to suspended (API)", _num(r.seconds_to_suspended))
    table.add_row("seconds until drained", _num(r.seconds_until_drained))
    table.add_row("resume deploy live after", _resume_deploy(r))
    table.add_row("seconds to healthy", _num(r.seconds_to_healthy))
    table.add_row("seconds to rejoin", _num(r.seconds_to_rejoin))
    table.add_row("timing", esc(r.timing.get("target", "-")))
    table.add_row(
        "p95 before / while suspended",
        f"{_num(r.baseline_p95_latency_ms)} / {_num(r.suspended_p95_latency_ms)} ms",
    )
    checklist = _checks_table("failover checklist", r.checks)
    return Group(*lines, checklist, *_log_lines(r.logs), table)


def drill_resume_note(r: DrillReport, flags: str) -> str:
    """Added to a failed drill's error: whether its instance is back, and if not, how."""
    if r.resumed:
        return f" (api-{r.instance} resumed)"
    return f" (api-{r.instance} NOT resumed: run `koinonia-infra resume {r.instance}{flags}`)"


def rollout_renderable(r: RolloutReport) -> Group:
    steps = Table(title="instances", title_justify="left")
    for col in (
        "instance",
        "service",
        "outcome",
        "previous deploy",
        "new deploy",
        "status",
        "to live",
        "to healthy",
        "to rejoin",
        "handover",
    ):
        steps.add_column(col, overflow="fold")
    for s in r.steps:
        steps.add_row(
            f"api-{s.instance}",
            esc(s.service),
            esc(s.outcome),
            esc(s.previous_deploy or "-"),
            esc(s.deploy or "-"),
            esc(s.deploy_status or "-"),
            _secs(s.seconds_to_live),
            _secs(s.seconds_to_healthy),
            _secs(s.seconds_to_rejoin),
            _secs(s.seconds_handover),
        )
    lines = [f"{_headline(r.outcome, 'rollout')}: order {', '.join(map(str, r.order))}"]
    if r.error:
        lines.append(f"[red]{esc(r.error)}[/]")
    checks = _checks_table("rollout checks", r.checks)
    return Group(*lines, steps, checks, *_log_lines(r.logs), _traffic_table(r))


def _resume_deploy(r: DrillReport) -> str:
    if r.resume_deploy is None:
        return "-"
    return f"{r.resume_deploy}: {_num(r.seconds_to_resume_live)} s"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:g} s"


def _md_checks(checks: list[Check]) -> list[str]:
    out = []
    for c in checks:
        note = "" if c.gating else " (informational)"
        threshold = f" (threshold {md(c.threshold)})" if c.threshold else ""
        out.append(f"- {_MD_BOX[c.passed]} {md(c.name)}: {md(c.measured)}{threshold}{note}")
    return out


def _md_logs(logs: LogScan | None) -> list[str]:
    """The error-level lines of the operation's window, one per line (already redacted)."""
    if logs is None or not logs.read or not logs.error_count:
        return []
    more = logs.error_count - len(logs.first)
    return [
        "",
        f"## Error lines in the instances' logs ({logs.error_count})",
        "",
        *[f"- {md(line)}" for line in logs.first],
        *([f"- … and {more} more"] if more > 0 else []),
    ]


def _log_lines(logs: LogScan | None) -> list[str]:
    if logs is None or not logs.read or not logs.error_count:
        return []
    return [f"[red]error line:[/] {esc(line)}" for line in logs.first]


def _md_traffic(t: TrafficSummary) -> list[str]:
    rows = ["| measure | value |", "|---|---|"]
    rows += [f"| {md(k)} | {md(v)} |" for k, v in _traffic_rows(t)]
    return rows


def drill_markdown(r: DrillReport) -> str:
    k = r.instance
    lines = [
        f"# Failover drill: api-{k} ({md(r.service)})",
        "",
        f"- Outcome: **{md(r.outcome)}**" + (f": {md(r.error)}" if r.error else ""),
        f"- Instance api-{k} ({md(r.service_id)}) suspended: {'yes' if r.suspended else 'no'}; "
        f"resumed: **{'yes' if r.resumed else 'NO: resume it by hand'}**",
        "",
        "## Runbook failover checklist",
        "",
        *_md_checks(r.checks),
        *_md_logs(r.logs),
        "",
        "## Traffic through the edge",
        "",
        *_md_traffic(r),
        f"| seconds to suspended (API) | {_num(r.seconds_to_suspended)} |",
        f"| seconds until drained | {_num(r.seconds_until_drained)} |",
        f"| resume deploy live after | {md(_resume_deploy(r))} |",
        f"| seconds to healthy | {_num(r.seconds_to_healthy)} |",
        f"| seconds to rejoin | {_num(r.seconds_to_rejoin)} |",
        f"| timing | {md(r.timing.get('target', '-'))} |",
        f"| p95 before / while suspended | {_num(r.baseline_p95_latency_ms)} / "
        f"{_num(r.suspended_p95_latency_ms)} ms |",
        "",
        "## Timeline",
        "",
        *[f"- {e.at:.2f} s: {md(e.event)}" for e in r.timeline],
    ]
    return "\n".join(lines) + "\n"


def rollout_markdown(r: RolloutReport) -> str:
    lines = [
        "# Rolling redeploy",
        "",
        f"- Outcome: **{md(r.outcome)}**" + (f": {md(r.error)}" if r.error else ""),
        f"- Order: {', '.join(f'api-{n}' for n in r.order)}",
        "",
        "| instance | service | outcome | previous deploy | new deploy | status | to live | "
        "to healthy | to rejoin | handover |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| api-{s.instance} | {md(s.service)} | {md(s.outcome)} | "
            f"{md(s.previous_deploy or '-')} | {md(s.deploy or '-')} | "
            f"{md(s.deploy_status or '-')} | {_secs(s.seconds_to_live)} | "
            f"{_secs(s.seconds_to_healthy)} | {_secs(s.seconds_to_rejoin)} | "
            f"{_secs(s.seconds_handover)} |"
            for s in r.steps
        ],
        "",
        "## Checks",
        "",
        *_md_checks(r.checks),
        *_md_logs(r.logs),
        "",
        "## Traffic through the edge",
        "",
        *_md_traffic(r),
    ]
    return "\n".join(lines) + "\n"
