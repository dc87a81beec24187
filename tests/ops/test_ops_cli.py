"""The `status`, `drill failover` and `rollout` commands' guard rails, without a sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from koinonia_infra.cli import app


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    # Port 9 on loopback: nothing listens, so every probe fails fast with "connection refused".
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "edgeUrl": "http://127.0.0.1:9",
                "instances": [
                    {
                        "number": n,
                        "name": f"svc-{n}",
                        "serviceId": f"srv-{n}",
                        "url": "http://127.0.0.1:9",
                        "privateAddress": f"svc-{n}:8080",
                    }
                    for n in (1, 2)
                ],
                "renderApiUrl": "http://127.0.0.1:9/v1",
            }
        )
    )
    return path


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RENDER_API_KEY", "RENDER_APIKEY", "RENDER_API_URL"):
        monkeypatch.delenv(var, raising=False)


def test_drill_needs_yes_without_a_terminal(outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_API_KEY", "k")
    result = CliRunner().invoke(app, ["drill", "failover", "--outputs", str(outputs)])
    assert result.exit_code == 2
    assert "drill failover suspends api-1 (svc-1): pass --yes" in result.stderr


def test_drill_without_api_key_is_an_environment_error(outputs: Path) -> None:
    result = CliRunner().invoke(app, ["drill", "failover", "--outputs", str(outputs), "--yes"])
    assert result.exit_code == 3
    assert "drill failover needs the Render API: set RENDER_API_KEY" in result.stderr


def test_drill_of_an_undeclared_instance_is_a_usage_error(outputs: Path) -> None:
    result = CliRunner().invoke(
        app, ["drill", "failover", "--outputs", str(outputs), "--instance", "3", "--yes"]
    )
    assert result.exit_code == 2
    assert "instance 3 is not in the deployment (declared: 1, 2)" in result.stderr


def test_drill_refuses_when_instances_are_down(
    outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RENDER_API_KEY", "rnd_not_to_be_printed")
    result = CliRunner().invoke(app, ["drill", "failover", "--outputs", str(outputs), "--yes"])
    assert result.exit_code == 1
    assert "refusing the failover drill: only 0 of 2 instances are healthy" in result.stderr
    assert "api-1: connection refused" in result.stderr
    assert "rnd_not_to_be_printed" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["drill", "failover", "--yes"], ["rollout"]])
def test_an_unwritable_report_path_is_refused_before_anything_runs(
    outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("RENDER_API_KEY", "k")
    report = tmp_path / "no-such-dir" / "drill.md"
    result = CliRunner().invoke(app, [*command, "--outputs", str(outputs), "--report", str(report)])
    assert result.exit_code == 2
    assert f"--report {report}: not a file in an existing directory" in result.stderr
    # Refused up front: no health probe ran, so no refusal about unhealthy instances either.
    assert "refusing" not in result.output


def test_rollout_rejects_a_bad_order(outputs: Path) -> None:
    result = CliRunner().invoke(app, ["rollout", "--outputs", str(outputs), "--order", "2,x"])
    assert result.exit_code == 2
    assert "--order '2,x': expected instance numbers like 2,1" in result.stderr


def test_status_without_key_warns_and_shows_health(outputs: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--outputs", str(outputs), "--format", "json"])
    assert result.exit_code == 0
    assert "no Render API key" in result.stderr
    data = json.loads(result.stdout)
    assert [s["role"] for s in data["services"]] == ["api-1", "api-2", "edge"]
    assert all(not s["healthy"] for s in data["services"])
    assert all("connection refused" in s["health"] for s in data["services"])


def test_status_with_unreachable_api_reports_it_per_service(
    outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RENDER_API_KEY", "rnd_secret_value")
    # The user's key goes to an endpoint the user chose, never to the descriptor's renderApiUrl.
    monkeypatch.setenv("RENDER_API_URL", "http://127.0.0.1:9/v1")
    result = CliRunner().invoke(app, ["status", "--outputs", str(outputs), "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert "127.0.0.1 unreachable" in data["services"][0]["apiError"]
    assert "rnd_secret_value" not in result.output


def test_target_flags_are_exclusive(outputs: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--outputs", str(outputs), "--target", "sandbox"])
    assert result.exit_code == 2
    assert "choose one of --stack, --outputs, --target" in result.stderr
