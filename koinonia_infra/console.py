"""One shared output object: messages to stderr, results (tables, JSON, Markdown) to stdout.

Keeping results on stdout and chatter on stderr is what lets CI pipe `--format json` into jq.

Every console of the tool comes from `make_console`, and follows one policy:

- colour and styles only on a terminal: into a pipe or a file (CI logs) not one escape sequence;
  `FORCE_COLOR` is the explicit opt-in rich itself honours;
- `NO_COLOR` (https://no-color.org/) set to anything non-empty: no colour, read when printing so
  it holds however the process was started;
- whatever text a renderable carries, control characters reach the terminal as visible escapes
  (`\\x1b`), never as instructions to it: a service name cannot clear the screen.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.segment import Segment
from rich.text import Text

from koinonia_infra.textsafe import inert, inert_lines


def no_color() -> bool:
    return os.environ.get("NO_COLOR", "") != ""


class _InertConsole(Console):
    """A rich Console whose output is plain text off a terminal or under NO_COLOR, and whose
    text segments never carry control characters (line breaks are rich's own layout)."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        terminal = self.is_terminal
        plain = not terminal or no_color()
        cleaned: list[Segment] = []
        for text, style, control in buffer:
            if control is not None:
                if terminal:  # cursor movement of live displays; rich drops it off a terminal
                    cleaned.append(Segment(text, style, control))
                continue
            cleaned.append(Segment(inert_lines(text), None if plain else style))
        return super()._render_buffer(cleaned)


def make_console(*, stderr: bool = False, **options: Any) -> Console:
    """The tool's one Console factory (see the module docstring for its policy)."""
    options.setdefault("soft_wrap", True)
    return _InertConsole(stderr=stderr, **options)


def esc(value: object) -> str:
    """Outside text (a service name, a URL, an API error) for a string that rich parses as
    markup, e.g. a table cell next to the tool's own `[green]PASS[/]`: shown as written."""
    return escape(inert(str(value)))


def plain(value: object) -> Text:
    """Outside text as a table cell or line: shown as written, never parsed as rich markup."""
    return Text(inert(str(value)))


def _tame_typer() -> None:
    """Typer renders --help and usage errors on consoles of its own, forced to a terminal
    whenever GITHUB_ACTIONS is set (typer/rich_utils.py `FORCE_TERMINAL`): escape codes in a log
    file. Give them the tool's policy: a terminal only if it is one or FORCE_COLOR asks."""
    from typer import rich_utils

    rich_utils.FORCE_TERMINAL = True if os.environ.get("FORCE_COLOR") else None
    if no_color():
        rich_utils.COLOR_SYSTEM = None


class Output:
    def __init__(self, *, stdout: Console | None = None, stderr: Console | None = None) -> None:
        self.out = stdout or make_console()
        self.err = stderr or make_console(stderr=True)

    def info(self, message: str) -> None:
        self.err.print(escape(inert(message)))

    def success(self, message: str) -> None:
        self.err.print(f"[green]✓[/] {escape(inert(message))}")

    def warning(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(inert(message))}")

    def error(self, message: str) -> None:
        self.err.print(f"[bold red]error:[/] {escape(inert(message))}")

    def error_line(self, line: str) -> None:
        """One more line of an error (a `ConfigError` problem), indented, in red."""
        self.err.print(Text(f"  {inert(line)}", style="red"), highlight=False)

    def json(self, data: Any) -> None:
        # Plain write: rich would wrap or highlight, and CI parses this. json.dumps escapes
        # every control character (\u001b), so nothing in the data acts on a terminal.
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def text(self, text: str) -> None:
        # Markdown and other documents the tool composed; outside text in them is escaped by
        # their writers (koinonia_infra.textsafe.md); a stray control character still is not
        # passed to the terminal.
        text = inert_lines(text)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    @property
    def interactive(self) -> bool:
        return sys.stdin.isatty() and self.err.is_terminal


_tame_typer()
output = Output()
