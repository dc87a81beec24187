"""The monitor's screen (rich), its Markdown report, and the sparklines both carry.

A sparkline is one character per interval of the window, eight heights (U+2581…U+2588), a
space where the API had no point: CPU, requests and p95 per instance read at a glance in a
terminal, in a job summary and in a GitHub issue alike.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from koinonia_infra.console import esc
from koinonia_infra.monitor.model import MonitorReport, Points, TargetReport
from koinonia_infra.textsafe import md, md_code

BARS = "▁▂▃▄▅▆▇█"


def sparkline(points: Points, *, top: float | None = None) -> str:
    """`points` as bars scaled to `top` (default: their maximum); None is a gap."""
    values = [p for p in points if p is not None]
    if not values:
        return " " * len(points)
    ceiling = top if top is not None and top > 0 else max(values)
    out = []
    for p in points:
        if p is None:
            out.append(" ")
        elif ceiling <= 0:
            out.append(BARS[0])
        else:
            level = round(min(p, ceiling) / ceiling * (len(BARS) - 1))
            out.append(BARS[max(0, min(len(BARS) - 1, level))])
    return "".join(out)


def _num(value: float | None, fmt: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def _cpu(t: TargetReport) -> str:
    return _num(t.cpu_percent, ".0f", " %") + " (peak " + _num(t.cpu_peak_percent, ".0f", " %)")


def _memory(t: TargetReport) -> str:
    text = _num(t.memory_mb, ".0f", " MB")
    if t.memory_percent is not None:
        text += f" ({t.memory_percent:.0f} %)"
    return text


def _requests(t: TargetReport) -> str:
    share = "" if t.request_share_percent is None else f" ({t.request_share_percent:.0f} %)"
    return f"{t.requests}{share}"


def _latency(t: TargetReport) -> str:
    return "/".join(_num(v, ".0f") for v in (t.p50_ms, t.p95_ms, t.p99_ms)) + " ms"


def _state(t: TargetReport) -> str:
    if t.down:
        return f"down: {t.down_reason or '?'}"
    return "suspended" if t.suspended else "up"


def render_screen(report: MonitorReport) -> RenderableType:
    minutes = (report.end - report.start).total_seconds() / 60
    title = (
        f"koinonia monitor · last {minutes:g} min · {report.resolution_seconds} s per bar · "
        f"{report.generated_at:%H:%M:%S} UTC"
    )
    table = Table(title=title, title_justify="left")
    for col in ("service", "state", "cpu", "cpu ▁▃▅█", "memory", "requests", "req ▁▃▅█",
                "p50/p95/p99", "p95 ▁▃▅█", "5xx"):  # fmt: skip
        table.add_column(col, overflow="fold")
    for t in report.targets:
        state = _state(t)
        table.add_row(
            esc(t.role),
            f"[red]{esc(state)}[/]" if t.down else f"[green]{esc(state)}[/]",
            _cpu(t),
            sparkline(t.cpu_series, top=100),
            _memory(t),
            _requests(t),
            sparkline(t.request_series),
            _latency(t),
            sparkline(t.p95_series),
            _num(t.error_rate_percent, ".2f", " %"),
        )
    parts: list[RenderableType] = [table]
    if report.datastores:
        stores = Table(title="datastores", title_justify="left")
        for col in ("datastore", "id", "cpu", "cpu ▁▃▅█", "memory", "connections"):
            stores.add_column(col)
        for s in report.datastores:
            stores.add_row(
                s.role,
                esc(s.resource_id),
                _num(s.cpu_percent, ".0f", " %"),
                sparkline(s.cpu_series, top=100),
                _num(s.memory_mb, ".0f", " MB"),
                _num(s.connections, ".0f"),
            )
        parts.append(stores)
    parts.append(Text(f"events ({len(report.events)} in the window):", style="bold"))
    for e in report.events[:10]:
        parts.append(Text(f"  {e.timestamp:%H:%M:%S} {e.role} {e.type} {e.detail}".rstrip()))
    logs = report.logs
    heading = f"error-level log lines: {logs.error_count}" if logs.read else "logs: not read"
    parts.append(Text(heading, style="bold"))
    parts.extend(Text(f"  {line}") for line in logs.first)
    if report.alerts:
        parts.append(Text(f"alerts ({len(report.alerts)}):", style="bold red"))
        parts.extend(Text(f"  ✗ {a.message}", style="red") for a in report.alerts)
    else:
        parts.append(Text("no alert rule fired", style="green"))
    parts.extend(Text(f"warning: {w}", style="yellow") for w in report.warnings)
    return Group(*parts)


def render_markdown(report: MonitorReport) -> str:
    minutes = (report.end - report.start).total_seconds() / 60
    verdict = f"**{len(report.alerts)} alert rule(s) fired**" if report.alerts else "**All clear**"
    lines = [
        "# koinonia monitor",
        "",
        f"{verdict} · window {report.start:%Y-%m-%d %H:%M} to {report.end:%H:%M} UTC "
        f"({minutes:g} min, {report.resolution_seconds} s per bar)",
        "",
    ]
    if report.alerts:
        lines += [
            "## Alerts",
            "",
            "| rule | target | measured | threshold |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {md(a.rule)} | {md(a.target)} | {md(a.measured)} | {md(a.threshold)} |"
            for a in report.alerts
        ]
        lines.append("")
    lines += [
        "## Services",
        "",
        "| service | state | cpu | cpu over time | memory | requests | requests over time "
        "| p50/p95/p99 | p95 over time | 5xx |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in report.targets:
        lines.append(
            f"| {md(t.role + ' ' + t.name)} | {md(_state(t))} | {md(_cpu(t))} "
            f"| {md_code(sparkline(t.cpu_series, top=100))} | {md(_memory(t))} "
            f"| {md(_requests(t))} | {md_code(sparkline(t.request_series))} "
            f"| {md(_latency(t))} | {md_code(sparkline(t.p95_series))} "
            f"| {md(_num(t.error_rate_percent, '.2f', ' %'))} |"
        )
    if report.datastores:
        lines += ["", "| datastore | cpu | memory | connections |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {md(s.role)} {md_code(s.resource_id)} | {md(_num(s.cpu_percent, '.0f', ' %'))} "
            f"| {md(_num(s.memory_mb, '.0f', ' MB'))} | {md(_num(s.connections, '.0f'))} |"
            for s in report.datastores
        ]
    lines += ["", f"## Events ({len(report.events)})", ""]
    lines += [
        f"- {e.timestamp:%H:%M:%S} {md(e.role)} {md_code(e.type)} {md(e.detail)}".rstrip()
        for e in report.events
    ] or ["- none"]
    logs = report.logs
    lines += ["", f"## Error-level log lines: {logs.error_count if logs.read else 'not read'}", ""]
    lines += [f"- {md(line)}" for line in logs.first]
    if report.warnings:
        lines += ["", "## Warnings", ""] + [f"- {md(w)}" for w in report.warnings]
    return "\n".join(lines) + "\n"
