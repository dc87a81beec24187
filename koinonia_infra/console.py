"""One shared output object: messages to stderr, results (tables, JSON, Markdown) to stdout.

Keeping results on stdout and chatter on stderr is what lets CI pipe `--format json` into jq.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape


class Output:
    def __init__(self, *, stdout: Console | None = None, stderr: Console | None = None) -> None:
        self.out = stdout or Console(soft_wrap=True)
        self.err = stderr or Console(stderr=True, soft_wrap=True)

    def info(self, message: str) -> None:
        self.err.print(escape(message))

    def success(self, message: str) -> None:
        self.err.print(f"[green]✓[/] {escape(message)}")

    def warning(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(message)}")

    def error(self, message: str) -> None:
        self.err.print(f"[bold red]error:[/] {escape(message)}")

    def json(self, data: Any) -> None:
        # Plain write: rich would wrap or highlight, and CI parses this.
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def text(self, text: str) -> None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    @property
    def interactive(self) -> bool:
        return sys.stdin.isatty() and self.err.is_terminal


output = Output()
