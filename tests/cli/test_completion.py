"""Shell completion is on: typer's `--install-completion` / `--show-completion`, and the script
they install completes commands and options by calling the CLI back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The installed entry point: completion is keyed to the program's name (`koinonia-infra`).
CLI = [str(Path(sys.executable).parent / "koinonia-infra")]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_help_offers_the_completion_options() -> None:
    done = _run("--help", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "--install-completion" in done.stdout
    assert "--show-completion" in done.stdout


def test_show_completion_prints_a_script_that_calls_the_cli_back() -> None:
    done = _run("--show-completion", "bash")
    assert done.returncode == 0, done.stderr
    # The prog name as installed: the script is bound to `koinonia-infra`.
    assert "_KOINONIA_INFRA_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _koinonia_infra_completion koinonia-infra" in done.stdout


def _complete(words: str) -> list[str]:
    env = {
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
        "_KOINONIA_INFRA_COMPLETE": "complete_bash",
    }
    done = _run(env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_completion_names_commands_and_their_options() -> None:
    assert _complete("koinonia-infra sand") == ["sandbox"]
    assert "--stack" in _complete("koinonia-infra sandbox up --st")
