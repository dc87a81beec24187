"""The `koinonia-infra` command line. Commands are thin: parse options, call one domain function,
render its result. Heavy imports (pulumi, httpx) happen inside the commands so `--help` stays fast.
For the same reason the cli modules do without `from __future__ import annotations`: typer would
compile and eval every option's annotation string on each start (a quarter of `--help`'s own
time); names imported only for type checking are written as strings.
"""

import os
import sys
from typing import Any

import typer
from typer import _click
from typer.core import TyperGroup

from koinonia_infra.cli import adopt, engine_cmds, monitor, ops, plan, sandbox, verify
from koinonia_infra.console import output
from koinonia_infra.errors import EXIT_CODES_HELP, EXIT_INTERRUPTED, KoinoniaError

_state = {"debug": False}


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("KOINONIA_DEBUG", "") not in ("", "0")


class KoinoniaGroup(TyperGroup):
    """Turns the project's exceptions into one red line and a meaningful exit code."""

    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KoinoniaError as exc:
            if debug_enabled():
                output.err.print_exception()
            output.error(exc.message)
            for line in exc.lines:
                output.error_line(line)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            output.error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    name="koinonia-infra",
    cls=KoinoniaGroup,
    help=(
        "Run the koinonia SMS API as N identical Render services behind one edge: declare it "
        "(plan, preview, up), prove it (verify, status, drill failover, rollout), roll back "
        "(destroy-instance N), rehearse locally (sandbox)."
    ),
    epilog=EXIT_CODES_HELP,
    # `--install-completion` / `--show-completion` (typer's, via click's completion classes):
    # the completion script calls the CLI back with _KOINONIA_INFRA_COMPLETE set.
    add_completion=True,
    pretty_exceptions_enable=False,
    # Markdown mode reflows wrapped docstrings instead of keeping their line breaks.
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    if version:
        from koinonia_infra import __version__

        typer.echo(f"koinonia-infra {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


for _module in (plan, engine_cmds, verify, sandbox, ops, adopt, monitor):
    _module.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # raised outside a command (e.g. while importing)
        sys.exit(EXIT_INTERRUPTED)
