"""Colour only on a terminal: every command's error output into a pipe (a CI log) carries no
escape sequence, even where typer would force colours (GITHUB_ACTIONS); NO_COLOR is honoured on
a real terminal too."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "koinonia-infra"

ERROR_PATHS = [
    ["plan", "--stack", "nope"],
    ["plan", "--stack", "bad"],  # a ConfigError with one line per problem
    ["plan", "--stack", "dup"],
    ["plan", "--bogus"],  # typer's own usage error
    ["nosuchcommand"],
    ["verify", "--requests", "0"],
    ["verify", "--outputs", "missing.json"],
    ["verify", "--outputs", "hostile.json"],
    ["verify", "--target", "bogus"],
    ["status", "--outputs", "missing.json"],
    ["status", "--outputs", "hostile.json"],
    ["drill", "failover", "--outputs", "missing.json"],
    ["rollout", "--outputs", "missing.json"],
    ["destroy-instance", "7", "--stack", "prod"],
    ["preview", "--stack", "prod"],
    ["outputs", "--stack", "prod"],
    ["engine", "status"],
    ["sandbox", "status", "--state-dir", "/nonexistent/koinonia"],
    ["sandbox", "down", "--state-dir", "/nonexistent/koinonia"],
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "Pulumi.yaml", path / "Pulumi.yaml")
    shutil.copy(ROOT / "Pulumi.prod.yaml", path / "Pulumi.prod.yaml")
    (path / "Pulumi.bad.yaml").write_text(
        "config:\n  koinonia:ownerId: bad\n  koinonia:regin: x\n  koinonia:api: {port: 10000}\n"
    )
    (path / "Pulumi.dup.yaml").write_text(
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:region: ohio\n  koinonia:region: ohio\n"
    )
    (path / "hostile.json").write_text(
        '{"edgeUrl": "http://127.0.0.1:1", "instances": [{"number": 1, '
        '"name": "a\\u001b[2J[blink]b[/blink]", "serviceId": "s", "url": "u", '
        '"privateAddress": "p"}]}'
    )
    return path


def env_for(project: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"NO_COLOR", "FORCE_COLOR", "PY_COLORS", "KOINONIA_DEBUG", "CI"}
        and not k.startswith(("PULUMI_", "RENDER_"))
    }
    env.update(KOINONIA_PROJECT_DIR=str(project), PULUMI_HOME=str(project / ".pulumi"))
    # The worst case: typer forces a terminal whenever GITHUB_ACTIONS is set.
    env.update(GITHUB_ACTIONS="true", TERM="xterm-256color", PATH="/usr/bin:/bin")
    env.update(extra)
    return env


@pytest.mark.parametrize("args", ERROR_PATHS, ids=" ".join)
def test_error_output_into_a_pipe_has_no_escape_sequence(project: Path, args: list[str]) -> None:
    result = subprocess.run(
        [str(CLI), *args],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0 or args[0] == "sandbox", result
    output = result.stdout + result.stderr
    assert output.strip(), "the command said nothing"
    assert b"\x1b" not in output, output.decode(errors="replace")


def run_on_terminal(project: Path, args: list[str], **extra: str) -> bytes:
    """Run with stdout and stderr on a pseudo-terminal; what the terminal received."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(CLI), *args],
            cwd=project,
            env=env_for(project, **extra),
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
        )
        os.close(follower)
        received = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        proc.wait(timeout=60)
        return received
    finally:
        os.close(leader)


def test_a_terminal_gets_colour_and_no_color_removes_it(project: Path) -> None:
    coloured = run_on_terminal(project, ["plan", "--stack", "bad"])
    assert b"\x1b[" in coloured  # the check below can fail: a terminal does get colour
    plain = run_on_terminal(project, ["plan", "--stack", "bad"], NO_COLOR="1")
    assert b"error:" in plain
    assert b"\x1b" not in plain, plain


def test_no_color_holds_for_typer_usage_errors_too(project: Path) -> None:
    plain = run_on_terminal(project, ["plan", "--bogus"], NO_COLOR="1")
    assert b"No such option" in plain
    assert b"\x1b[3" not in plain, plain  # no foreground colour
