"""A full disk under the state dir: the cause (no space left, which path) reaches the user, no
half-written file is left, and a report that cannot be written is exit 3 with no file.

The disk is a real 64 KiB tmpfs (`small_disk`, tests/conftest.py), filled for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import pytest
import typer
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.errors import EXIT_ENVIRONMENT, EnvironmentProblem
from koinonia_infra.files import write_atomic, write_report
from koinonia_infra.sandbox.state import (
    SandboxState,
    load_secrets,
    read_state,
    record_for,
    write_state,
)

runner = CliRunner()


class SmallDisk(Protocol):
    """tests/conftest.py `small_disk`: a 64 KiB tmpfs of our own."""

    path: Path

    def fill(self, leave: int = 0) -> None: ...
    def files(self) -> list[str]: ...


def no_temporary_files(disk: SmallDisk) -> None:
    leftovers = [name for name in disk.files() if name.endswith(".tmp")]
    assert leftovers == [], leftovers


# ---- the sandbox ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("sandbox_binaries")
def test_up_on_a_full_disk_names_the_cause_and_the_path(small_disk: SmallDisk) -> None:
    small_disk.fill()
    state_dir = small_disk.path / "sandbox"
    result = runner.invoke(app, ["sandbox", "up", "--state-dir", str(state_dir)])
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert "No space left on device" in last
    assert str(state_dir / "secrets.json") in last
    assert "supervisor.log" not in last  # not "see the log": the log is empty
    no_temporary_files(small_disk)
    assert not (state_dir / "secrets.json").exists()


@pytest.mark.integration
@pytest.mark.usefixtures("sandbox_binaries")
def test_up_when_the_disk_fills_during_initdb_names_the_cause(small_disk: SmallDisk) -> None:
    small_disk.fill(leave=24 * 1024)  # room for the small files, not for a cluster
    state_dir = small_disk.path / "sandbox"
    result = runner.invoke(app, ["sandbox", "up", "--state-dir", str(state_dir)])
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert "No space left on device" in last, last
    no_temporary_files(small_disk)
    state = read_state(state_dir)
    assert state is None or state.processes == [] or not state.running


def test_secrets_on_a_full_disk_raise_with_the_path_and_leave_no_tmp(
    small_disk: SmallDisk,
) -> None:
    small_disk.fill()
    with pytest.raises(EnvironmentProblem) as info:
        load_secrets(small_disk.path)
    message = str(info.value)
    assert message.startswith(f"cannot write {small_disk.path / 'secrets.json'}: ")
    assert "No space left on device" in message
    no_temporary_files(small_disk)
    assert not (small_disk.path / "secrets.json").exists()


def test_state_file_stays_whole_when_a_rewrite_hits_a_full_disk(small_disk: SmallDisk) -> None:
    state = SandboxState(supervisor=record_for("supervisor", 1), ports={"edge": 1})
    write_state(small_disk.path, state)
    small_disk.fill()
    bigger = state.model_copy(update={"ports": {f"p{i}": i for i in range(2000)}})
    with pytest.raises(EnvironmentProblem, match="No space left on device"):
        write_state(small_disk.path, bigger)
    assert read_state(small_disk.path) == state  # the previous record, intact
    no_temporary_files(small_disk)


# ---- reports ------------------------------------------------------------------------------------


def test_report_to_a_full_device_is_an_environment_error() -> None:
    with pytest.raises(EnvironmentProblem) as info:
        write_report(Path("/dev/full"), "# sign-off\n")
    assert info.value.exit_code == EXIT_ENVIRONMENT
    assert str(info.value).startswith("--report /dev/full: No space left on device")


def test_report_on_a_full_disk_leaves_no_file(small_disk: SmallDisk) -> None:
    small_disk.fill()
    report = small_disk.path / "signoff.md"
    with pytest.raises(EnvironmentProblem, match="No space left on device"):
        write_report(report, "# sign-off\n" * 100)
    assert not report.exists()
    no_temporary_files(small_disk)


def test_existing_file_keeps_its_content_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text("old\n")
    path.chmod(0o640)
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o777 == 0o640


class _Report:
    exit_code = 0
    error = None
    outcome = "passed"

    def to_json(self) -> dict[str, object]:
        return {"outcome": "passed"}


@pytest.mark.parametrize("name", ["drill.md", "drill.json"])
def test_drill_and_rollout_report_on_a_full_disk_exit_3_without_a_file(
    small_disk: SmallDisk, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from koinonia_infra.cli.ops import _emit
    from koinonia_infra.cli.options import ReportFormat

    small_disk.fill()
    report = small_disk.path / name
    with pytest.raises(typer.Exit) as info:
        _emit(_Report(), ReportFormat.json, report, "# drill\n" * 100, "table")
    assert info.value.exit_code == EXIT_ENVIRONMENT
    assert not report.exists()
    no_temporary_files(small_disk)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"outcome": "passed"}  # the report still on stdout
    assert f"--report {report}: No space left on device" in captured.err


def test_verify_report_on_a_full_disk_exits_3_without_a_file(
    small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    from koinonia_infra.verify.model import VerifyOptions, VerifyReport

    def fake_verify(**_kwargs: Any) -> VerifyReport:
        return VerifyReport(
            deployment={"edgeUrl": "http://127.0.0.1:1", "instances": []},
            options=VerifyOptions(),
            checks=[],
            started_at="2026-01-01T00:00:00Z",
            duration_seconds=0.1,
        )

    monkeypatch.setattr("koinonia_infra.verify.runner.verify_deployment", fake_verify)
    small_disk.fill()
    report = small_disk.path / "signoff.md"
    result = runner.invoke(app, ["verify", "--target", "sandbox", "--report", str(report)])
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    assert f"--report {report}: No space left on device" in result.stderr
    assert not report.exists()
    no_temporary_files(small_disk)


def test_verify_report_into_a_missing_directory_fails_before_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(**_kwargs: Any) -> None:
        raise AssertionError("verify ran although its report could not be written")

    monkeypatch.setattr("koinonia_infra.verify.runner.verify_deployment", must_not_run)
    report = tmp_path / "missing" / "signoff.md"
    result = runner.invoke(app, ["verify", "--target", "sandbox", "--report", str(report)])
    assert result.exit_code == 2
    assert f"--report {report}: not a file in an existing directory" in result.stderr
