"""Options shared by several commands, declared once: a flag means the same thing, with the same
short form and help, in every command that takes it. Commands annotate their parameters with
these types (`stack: Stack = DEFAULT_STACK`, the default from project.py; `fmt: FormatOption =
Format.table`).
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from koinonia_infra.project import DEFAULT_STACK


class Format(StrEnum):
    """Output of a command whose result is a table or a JSON document."""

    table = "table"
    json = "json"


class ReportFormat(StrEnum):
    """Output of a command whose result is also a report (a sign-off, a drill's checklist)."""

    table = "table"
    json = "json"
    markdown = "markdown"


_STACK = typer.Option(
    "--stack",
    "-s",
    metavar="NAME",
    show_default=False,
    help="The stack: its settings are Pulumi.NAME.yaml, its outputs describe the deployment "
    f"[default: {DEFAULT_STACK}].",
)
# `--stack` where the stack is the only source (preview, up, plan, ...): default prod.
Stack = Annotated[str, _STACK]
# `--stack` as one of the deployment's sources (--stack | --outputs | --target): None when not
# given, so that giving two sources is an error (targets.resolve_descriptor).
StackSource = Annotated[str | None, _STACK]

Outputs = Annotated[
    Path | None,
    typer.Option(
        "--outputs",
        metavar="FILE",
        help="A deployment descriptor or `pulumi stack output --json` file.",
    ),
]
Target = Annotated[
    str | None,
    typer.Option("--target", metavar="sandbox", help="The local sandbox's deployment."),
]
StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        file_okay=False,
        help="The sandbox's state dir: its data, logs and descriptor "
        "[default: $XDG_STATE_HOME/koinonia-infra/sandbox].",
    ),
]
RenderApiUrl = Annotated[
    str | None,
    typer.Option(
        "--render-api-url",
        metavar="URL",
        help="Render API base URL for RENDER_API_KEY (default: $RENDER_API_URL, else Render's; "
        "never a URL read from a descriptor).",
    ),
]
FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="table (for people) or json (for scripts).")
]
ReportFormatOption = Annotated[
    ReportFormat,
    typer.Option("--format", "-f", help="table, json, or markdown (the report as written)."),
]
Yes = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal)."),
]
