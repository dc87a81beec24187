"""Live display of engine events, and the rich implementation of `DeployUI`.

`on_event` is called on a background thread: every state change and every print happens under
one lock. Engine text (names, messages) is escaped before it reaches rich markup and redacted.
On a terminal a live table is redrawn; elsewhere (CI, pipes) each change is one plain line.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from koinonia_infra.deploy.engine import policy_violation_text, redact, step_from_event
from koinonia_infra.deploy.types import ChangePlan, Level, Step, merge_op

if TYPE_CHECKING:
    from pulumi.automation.events import EngineEvent

    from koinonia_infra.deploy.types import EventSink

Operation = Literal["preview", "update"]

SYMBOL = {
    "create": "+",
    "update": "~",
    "replace": "+-",
    "delete": "-",
    "discard": "-",
    "import": "=",
    "read": ">",
    "same": " ",
}
PLANNED = {
    "create": "create",
    "update": "update",
    "replace": "replace",
    "delete": "delete",
    "import": "import",
}
PAST = {
    "create": "created",
    "update": "updated",
    "replace": "replaced",
    "delete": "deleted",
    "import": "imported",
    "read": "read",
    "same": "unchanged",
}


def _style(step: Step) -> str:
    if step.critical:
        return "bold red"
    if step.loud:
        return "bold yellow"
    if step.op == "create":
        return "green"
    if step.op == "update":
        return "yellow"
    return ""


def _hidden(step: Step) -> bool:
    return (
        step.op == "same"
        or step.type.startswith("pulumi:providers:")
        or (step.type == "pulumi:pulumi:Stack" and step.op in ("same", "update"))
    )


def critical_reason(step: Step) -> str:
    what = "datastore" if step.is_datastore else "API service"
    consequence = (
        "its data would be lost"
        if step.is_datastore
        else "it would get a new id and URL (downtime)"
    )
    reason = step.reason()
    return f"{what} {step.name}: {consequence}" + (f"; {reason}" if reason else "")


def adopted_reason(step: Step) -> str:
    """Why a step on an adopted resource (production that ran before this tool) is called out."""
    what = {"replace": "replaced", "delete": "deleted"}.get(step.op)
    if what is None:
        what = "deleted" if step.is_delete else "replaced" if step.is_replace else "redeployed"
    consequence = f"adopted production resource {step.name} would be {what}"
    reason = step.reason()
    return consequence + (f"; {reason}" if reason else "")


@dataclass
class _Row:
    step: Step
    state: str


class EngineDisplay:
    """The `on_event` callback of one engine operation."""

    def __init__(self, console: Console, operation: Operation, *, live: bool | None = None) -> None:
        self.console = console
        self.operation = operation
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}
        self._live_enabled = console.is_terminal if live is None else live
        self._live: Live | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> EngineDisplay:
        if self._live_enabled:
            self._live = Live(
                self._table(), console=self.console, refresh_per_second=8, transient=False
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._live is not None:
                self._live.update(self._table())
                self._live.stop()
                self._live = None

    # -- events ----------------------------------------------------------------------------

    def __call__(self, event: EngineEvent) -> None:
        with self._lock:
            self._handle(event)
            if self._live is not None:
                self._live.update(self._table())

    def _print(self, renderable: RenderableType) -> None:
        target = self._live.console if self._live is not None else self.console
        target.print(renderable, highlight=False, soft_wrap=True)

    def _handle(self, event: EngineEvent) -> None:
        step = step_from_event(event)
        if step is not None:
            self._on_step(event, step)
            return
        if event.diagnostic_event is not None:
            self._on_diagnostic(event)
        elif event.policy_event is not None:
            text = policy_violation_text(event) or ""
            style = "red" if "mandatory" in text else "yellow"
            self._print(Text.from_markup(f"[{style}]policy:[/] {escape(text)}"))
        elif event.summary_event is not None:
            changes = {
                str(getattr(k, "value", k)): int(v)
                for k, v in event.summary_event.resource_changes.items()
            }
            self._print(Text(summary_line(changes, self.operation), style="bold"))

    def _on_step(self, event: EngineEvent, step: Step) -> None:
        previous = self._rows.get(step.urn)
        op = merge_op(previous.step.op if previous else None, step.op)
        keys = step.keys or (previous.step.keys if previous else ())
        diffs = step.diffs or (previous.step.diffs if previous else ())
        merged = Step(op, step.urn, step.type, keys, diffs)
        if event.res_op_failed_event is not None:
            state = "failed"
        elif event.res_outputs_event is not None:
            state = "done"
        elif self.operation == "preview":
            state = "planned"
        else:
            state = "running"
        self._rows[step.urn] = _Row(merged, state)
        if _hidden(merged):
            return
        if self._live is None and (previous is None or state != previous.state):
            self._print(self._line(merged, state))
        if merged.critical and (previous is None or not previous.step.critical):
            self._print(Text.from_markup(f"[bold red]!! {escape(critical_reason(merged))}[/]"))

    def _on_diagnostic(self, event: EngineEvent) -> None:
        diag = event.diagnostic_event
        assert diag is not None
        if diag.severity not in ("error", "warning") or diag.ephemeral:
            return
        message = redact(diag.message).strip()
        if not message:
            return
        where = f"{diag.urn.rsplit('::', 1)[-1]}: " if diag.urn else ""
        style = "red" if diag.severity == "error" else "yellow"
        self._print(Text.from_markup(f"[{style}]{diag.severity}:[/] {escape(where + message)}"))

    # -- rendering -------------------------------------------------------------------------

    def _verb(self, op: str, state: str) -> str:
        if state == "planned":
            return PLANNED.get(op, op)
        if state == "done":
            return PAST.get(op, op)
        if state == "failed":
            return f"{op} failed"
        return f"{PLANNED.get(op, op)}…"

    def _line(self, step: Step, state: str) -> Text:
        symbol = SYMBOL.get(step.op, "?")
        style = "bold red" if state == "failed" else _style(step)
        text = Text(f"  {symbol:<2} {self._verb(step.op, state):<16} ", style=style)
        text.append(redact(step.type), style="dim")
        text.append(f"  {redact(step.name)}", style=style or "bold")
        if step.loud and not step.critical and step.reason():
            text.append(f"  ({redact(step.reason())})", style="yellow")
        return text

    def _table(self) -> RenderableType:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("", no_wrap=True)
        table.add_column("operation")
        table.add_column("type", style="dim")
        table.add_column("name")
        table.add_column("state")
        for row in self._rows.values():
            if _hidden(row.step):
                continue
            style = "bold red" if row.state == "failed" else _style(row.step)
            table.add_row(
                Text(SYMBOL.get(row.step.op, "?"), style=style),
                Text(row.step.op, style=style),
                Text(redact(row.step.type)),
                Text(redact(row.step.name), style=style),
                Text(row.state, style="bold red" if row.state == "failed" else ""),
            )
        return Group(Text(f"{self.operation}…", style="bold"), table)


def summary_line(changes: dict[str, int], operation: Operation) -> str:
    order = ["create", "update", "replace", "delete", "same"]
    parts: list[str] = []
    for op in sorted(changes, key=lambda o: (order.index(o) if o in order else len(order), o)):
        count = changes[op]
        if not count:
            continue
        if op == "same":
            parts.append(f"{count} unchanged")
        elif operation == "preview":
            parts.append(f"{count} to {op}")
        else:
            parts.append(f"{count} {PAST.get(op, op)}")
    return "Resources: " + (", ".join(parts) if parts else "no changes")


def render_plan(console: Console, plan: ChangePlan) -> None:
    """The plan after a preview: changes (loud ones loud), critical ones with their reason."""
    changes = [s for s in plan.changes if not _hidden(s)]
    at_risk = {s.urn for s in plan.adopted_at_risk}
    if not changes:
        console.print(f"stack {escape(plan.stack)}: no changes", highlight=False)
    else:
        console.print(f"[bold]Plan for stack {escape(plan.stack)}:[/]", highlight=False)
        for step in changes:
            style = "bold red" if step.urn in at_risk else _style(step)
            label = f"{SYMBOL.get(step.op, '?'):<2} {step.op:<8}"
            line = Text(f"  {label} ", style=style)
            line.append(redact(step.type), style="dim")
            line.append(f"  {redact(step.name)}", style=style or "bold")
            console.print(line, highlight=False, soft_wrap=True)
            if step.critical:
                console.print(
                    Text(f"     !! {redact(critical_reason(step))}", style="bold red"),
                    highlight=False,
                    soft_wrap=True,
                )
            elif step.loud and step.reason():
                console.print(
                    Text(f"     {redact(step.reason())}", style="yellow"), highlight=False
                )
            if step.urn in at_risk:
                console.print(
                    Text(f"     !! {redact(adopted_reason(step))}", style="bold red"),
                    highlight=False,
                    soft_wrap=True,
                )
    for violation in plan.policy_violations:
        console.print(Text(f"  policy: {violation}", style="red"), highlight=False, soft_wrap=True)
    console.print(summary_line(plan.summary, "preview"), highlight=False)


class RichUI:
    """`DeployUI` on the shared console (messages and progress on stderr)."""

    def __init__(self, console: Console | None = None, *, interactive: bool | None = None) -> None:
        from koinonia_infra.console import output

        self.console = console or output.err
        self._interactive = output.interactive if interactive is None else interactive

    @property
    def interactive(self) -> bool:
        return self._interactive

    def message(self, level: Level, text: str) -> None:
        prefix = {
            "info": "",
            "success": "[green]✓[/] ",
            "warning": "[yellow]warning:[/] ",
            "error": "[bold red]error:[/] ",
        }[level]
        self.console.print(f"{prefix}{escape(redact(text))}", highlight=False, soft_wrap=True)

    def show_plan(self, plan: ChangePlan) -> None:
        render_plan(self.console, plan)

    @contextmanager
    def progress(self, operation: Operation) -> Iterator[EventSink]:
        with EngineDisplay(self.console, operation) as display:
            yield display

    def confirm(self, question: str) -> bool:
        from rich.prompt import Confirm

        return Confirm.ask(escape(question), console=self.console, default=False)

    def ask(self, question: str) -> str:
        from rich.prompt import Prompt

        return Prompt.ask(escape(question), console=self.console, default="")
