"""After a drill killed without resuming (SIGKILL, power loss): every command that looks at the
deployment names the suspended instance and the way back, and `resume N` brings it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sandbox_ops import Drill, api_get, healthy, suspended, target
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.deploy.wiring import verify_deployment


def invoke(args: list[str], lock_home: Path) -> Any:
    result = CliRunner().invoke(app, args, env={"XDG_STATE_HOME": str(lock_home)})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.integration
def test_after_a_killed_drill_every_command_says_how_to_resume_and_resume_does(
    sandbox: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drill = Drill(sandbox, 1, duration=120, lock_home=tmp_path)
    try:
        drill.wait_for("no longer receives traffic")
    finally:
        drill.kill()  # SIGKILL: no cleanup can run
    assert suspended(sandbox, 1)
    command = f"koinonia-infra resume 1 --target sandbox --state-dir {sandbox.state_dir}"
    hint = f"api-1 (koinonia-sms-backend) is suspended: bring it back with `{command}`"

    status = invoke(["status", *target(sandbox)], tmp_path)
    assert status.exit_code == 0
    assert hint in status.stderr
    verify = invoke(["verify", *target(sandbox), "--requests", "20"], tmp_path)
    assert verify.exit_code == 1
    assert hint in verify.stderr
    # The lock died with the killed drill: the refusals come from what the API says.
    again = invoke(["drill", "failover", *target(sandbox), "--instance", "1", "--yes"], tmp_path)
    assert again.exit_code == 1
    assert hint in again.stderr
    other = invoke(["drill", "failover", *target(sandbox), "--instance", "2", "--yes"], tmp_path)
    assert other.exit_code == 1
    assert hint in other.stderr
    assert not suspended(sandbox, 2)
    rollout = invoke(["rollout", *target(sandbox), "--yes"], tmp_path)
    assert rollout.exit_code == 1
    assert hint in rollout.stderr
    # `up` verifies what it deployed the same way, naming the stack it deployed.
    capsys.readouterr()
    outcome = verify_deployment(sandbox.descriptor, None, "/health")
    assert not outcome.passed
    assert (
        "api-1 (koinonia-sms-backend) is suspended: bring it back with "
        f"`koinonia-infra resume 1 --stack {sandbox.descriptor.stack}`"
    ) in capsys.readouterr().err

    resumed = invoke(["resume", "1", *target(sandbox), "--format", "json"], tmp_path)
    assert resumed.exit_code == 0, resumed.output
    data = json.loads(resumed.stdout)
    assert data["kind"] == "resume"
    assert data["outcome"] == "passed"
    assert data["wasSuspended"] is True
    assert data["healthy"] is True
    assert data["secondsToHealthy"] is not None
    # Not deploying any more either: the next drill or rollout is not refused for it.
    assert data["deployStatus"] == "live"
    assert not suspended(sandbox, 1)
    assert healthy(sandbox, 1)
    assert sandbox.token not in resumed.output

    # Safe to run twice: nothing to resume, it only checks.
    twice = invoke(["resume", "1", *target(sandbox)], tmp_path)
    assert twice.exit_code == 0
    assert "api-1 (koinonia-sms-backend) healthy" in twice.stderr
    status = invoke(["status", *target(sandbox)], tmp_path)
    assert "is suspended" not in status.stderr


def test_resume_of_an_undeclared_instance_is_a_usage_error(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "edgeUrl": "http://127.0.0.1:9",
                "instances": [
                    {
                        "number": 1,
                        "name": "a",
                        "serviceId": "srv-a",
                        "url": "http://127.0.0.1:9",
                        "privateAddress": "a:8080",
                    }
                ],
            }
        )
    )
    result = invoke(["resume", "3", "--outputs", str(outputs)], tmp_path)
    assert result.exit_code == 2
    assert "instance 3 is not in the deployment (declared: 1)" in result.stderr


def test_resume_without_an_api_key_is_an_environment_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RENDER_API_KEY", raising=False)
    monkeypatch.delenv("RENDER_APIKEY", raising=False)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "edgeUrl": "http://127.0.0.1:9",
                "instances": [
                    {
                        "number": 1,
                        "name": "a",
                        "serviceId": "srv-a",
                        "url": "http://127.0.0.1:9",
                        "privateAddress": "a:8080",
                    }
                ],
            }
        )
    )
    result = invoke(["resume", "1", "--outputs", str(outputs)], tmp_path)
    assert result.exit_code == 3
    assert "resume needs the Render API" in result.stderr


@pytest.mark.integration
def test_resume_follows_the_deploy_render_starts_on_a_resume(
    render_timed_sandbox: Any, tmp_path: Path
) -> None:
    sandbox = render_timed_sandbox
    drill = Drill(sandbox, 1, duration=300, lock_home=tmp_path)
    try:
        drill.wait_for("no longer receives traffic", timeout=120)
    finally:
        drill.kill()
    assert suspended(sandbox, 1)
    resumed = invoke(["resume", "1", *target(sandbox), "--format", "json"], tmp_path)
    assert resumed.exit_code == 0, resumed.output
    data = json.loads(resumed.stdout)
    assert data["wasSuspended"] is True
    assert data["healthy"] is True
    assert data["deployStatus"] == "live"
    sid = sandbox.descriptor.instance(1).service_id
    assert api_get(sandbox, f"/services/{sid}/deploys/{data['deploy']}")["trigger"] == (
        "service_resumed"
    )
    # Nothing left in progress: a drill right after is not refused for api-1.
    status = json.loads(invoke(["status", *target(sandbox), "--format", "json"], tmp_path).stdout)
    assert status["services"][0]["deployStatus"] == "live"
