"""A shared option means the same thing everywhere: every command that takes `--stack`,
`--outputs`, `--target`, `--state-dir`, `--render-api-url` or `--format` declares it as
`koinonia_infra/cli/options.py` does, with the same short form and the same help."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import pytest
import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from koinonia_infra.cli import app, options

# `sandbox up --stack` takes 'none' and defaults to prod only when its stack file is found.
OWN_DECLARATION = {("sandbox up", "--stack")}


def _declared(annotation: Any) -> tuple[set[str], str]:
    """The option names and help an `options.py` type declares."""
    info = get_args(annotation)[1]
    # Under `Annotated`, typer reads the first name as `default` (there is no other default).
    return {info.default, *info.param_decls}, info.help


SHARED = {
    "--stack": _declared(options.Stack),
    "--outputs": _declared(options.Outputs),
    "--target": _declared(options.Target),
    "--state-dir": _declared(options.StateDir),
    "--render-api-url": _declared(options.RenderApiUrl),
}
# `--format` by the choices it offers.
FORMATS = {
    frozenset(options.Format): _declared(options.FormatOption),
    frozenset(options.ReportFormat): _declared(options.ReportFormatOption),
}


def commands(group: TyperGroup, prefix: str = "") -> Iterator[tuple[str, TyperCommand]]:
    """Every command of the app (`drill failover`, `sandbox up`, ...), by its path."""
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, TyperGroup):
            yield from commands(command, f"{path} ")
        else:
            assert isinstance(command, TyperCommand), path
            yield path, command


ROOT = typer.main.get_command(app)
assert isinstance(ROOT, TyperGroup)
ALL = dict(commands(ROOT))


def _option(command: TyperCommand, name: str) -> TyperOption | None:
    return next((p for p in command.params if isinstance(p, TyperOption) and name in p.opts), None)


def _found(name: str) -> dict[str, TyperOption]:
    return {path: option for path, command in ALL.items() if (option := _option(command, name))}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_a_shared_option_has_one_spelling_and_one_help(name: str) -> None:
    declared_names, declared_help = SHARED[name]
    differing = {
        path: (sorted([*option.opts, *option.secondary_opts]), option.help)
        for path, option in _found(name).items()
        if (path, name) not in OWN_DECLARATION
        and (set(option.opts) != declared_names or option.help != declared_help)
    }
    assert differing == {}


def test_format_has_one_spelling_and_one_help_per_choice_set() -> None:
    differing = {}
    for path, option in _found("--format").items():
        choices = frozenset(option.type_descriptor.annotation)
        declared = FORMATS.get(choices)
        if declared is None or (set(option.opts), option.help) != declared:
            differing[path] = (sorted(option.opts), sorted(choices), option.help)
    assert differing == {}


def test_the_commands_that_name_a_deployment_take_the_shared_options() -> None:
    # The walk above sees the commands: a test that found no option could not fail.
    with_stack = set(_found("--stack"))
    assert {"status", "drill failover", "rollout", "resume", "verify", "monitor"} <= with_stack
    assert {"plan", "adopt", "sandbox up"} <= with_stack
    assert {"sandbox up", "sandbox status", "sandbox down", "verify"} <= set(_found("--state-dir"))
    with_format = set(_found("--format"))
    assert {"status", "resume", "plan", "sandbox status"} <= with_format
    assert {"drill failover", "rollout", "verify", "monitor"} <= with_format
