"""`destroy-instance N` refuses while a drill holds another instance down: removing N then would
leave nothing serving. The engine is a stand-in that must never be reached; the Render API,
the instances and the drill are the real sandbox's."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from sandbox_ops import Drill
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.deploy import wiring
from koinonia_infra.deploy.destroy import http_health
from koinonia_infra.deploy.display import RichUI
from koinonia_infra.deploy.types import Seams
from koinonia_infra.ops.guard import hold_for_removal

ROOT = Path(__file__).resolve().parents[2]


class UnreachableEngine:
    """destroy-instance must stop before previewing anything."""

    def outputs(self) -> dict[str, Any]:
        return {}

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"the engine was asked to {name} although an instance is suspended")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(ROOT / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(tmp_path))
    return tmp_path


def test_the_real_seams_hold_the_deployment_around_destroy(project: Path) -> None:
    seams = wiring.build_seams("prod", RichUI(), deploy_timeout=1)
    assert seams.hold is not None


@pytest.mark.integration
def test_destroy_instance_refuses_while_a_drill_holds_another_instance_down(
    sandbox: Any, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def seams_for(stack: str, ui: Any, *, deploy_timeout: float) -> Seams:
        return Seams(
            ui=ui,
            descriptor_from_outputs=lambda _outputs: sandbox.descriptor,
            wait_for_deploys=lambda *_: pytest.fail("nothing may be deployed"),
            verify=lambda *_: pytest.fail("nothing may be verified"),
            health=http_health(),
            hold=lambda descriptor, number: hold_for_removal(descriptor, number, stack=stack),
        )

    monkeypatch.setattr(wiring, "open_engine", lambda *_a, **_k: UnreachableEngine())
    monkeypatch.setattr(wiring, "build_seams", seams_for)
    stack_file = project / "Pulumi.prod.yaml"
    before = stack_file.read_bytes()

    drill_home = tmp_path / "machine-a"
    drill = Drill(sandbox, 1, duration=60, lock_home=drill_home)
    try:
        drill.wait_for("no longer receives traffic")
        # From another machine: only the API's view stands in the way.
        result = CliRunner().invoke(
            app,
            ["destroy-instance", "2", "--yes"],
            env={"XDG_STATE_HOME": str(tmp_path / "machine-b")},
        )
        assert result.exit_code == 1, result.output
        assert "refusing to remove instance 2" in result.stderr
        assert (
            "api-1 (koinonia-sms-backend) is suspended: bring it back with "
            "`koinonia-infra resume 1 --stack prod`" in result.stderr
        )
        # From the drill's machine: the lock.
        same = CliRunner().invoke(
            app, ["destroy-instance", "2", "--yes"], env={"XDG_STATE_HOME": str(drill_home)}
        )
        assert same.exit_code == 4, same.output
        assert "`drill failover --instance 1`" in same.stderr
        drill.proc.send_signal(signal.SIGINT)
        code, _, stderr = drill.finish()
    finally:
        drill.kill()
    assert code == 130, stderr
    assert stack_file.read_bytes() == before
