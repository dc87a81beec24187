"""The `status`, `drill failover`, `rollout` and `resume` commands' guard rails and options,
without a sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from ops_fakes import World
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.ops.drill import run_failover_drill
from koinonia_infra.ops.resume import run_resume
from koinonia_infra.ops.rollout import run_rollout
from koinonia_infra.ops.status import collect_status
from koinonia_infra.ops.timing import sandbox_timing
from koinonia_infra.targets import DeploymentSource


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


# ---- `-s` and `-f` (the shared options) reach the operation --------------------------------------


def _fake_operation(
    monkeypatch: pytest.MonkeyPatch, where: str, run: Callable[[World], object]
) -> list[DeploymentSource]:
    """`where` (a domain entry point) runs `run` on a simulated deployment instead; the
    deployment each call was given is recorded."""
    seen: list[DeploymentSource] = []

    def fake(source: DeploymentSource, *_args: object, **_kwargs: object) -> object:
        seen.append(source)
        return run(World())

    monkeypatch.setattr(where, fake)
    return seen


def _drill(world: World) -> object:
    return run_failover_drill(
        world.descriptor(),
        world.client(),
        duration=2.0,
        settle=0.5,
        start_traffic=world.start_traffic,
        probe=world.probe,
        sleep=world.sleep,
        timing=sandbox_timing("fast"),
    )


def _rollout(world: World) -> object:
    return run_rollout(
        world.descriptor(),
        world.client(),
        order=[2, 1],
        start_traffic=world.start_traffic,
        probe=world.probe,
        sleep=world.sleep,
        settle=0.5,
        timing=sandbox_timing("fast"),
    )


def _resume(world: World) -> object:
    world.instances[1].suspended = True
    return run_resume(
        world.descriptor(), world.client(), 1, probe=world.probe, clock=world.now, sleep=world.sleep
    )


def _status(world: World) -> object:
    return collect_status(world.descriptor(), world.client(), world.probe, world.sample_edge)


@pytest.mark.parametrize(
    ("command", "where", "run", "kind"),
    [
        (["drill", "failover", "--yes"], "koinonia_infra.ops.drill.drill_failover", _drill,
         "drill-failover"),
        (["rollout", "--yes"], "koinonia_infra.ops.rollout.rollout_deployment", _rollout,
         "rollout"),
        (["resume", "1"], "koinonia_infra.ops.resume.resume_instance", _resume, "resume"),
    ],
    ids=["drill", "rollout", "resume"],
)  # fmt: skip
def test_short_stack_and_format_options_are_honoured(
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    where: str,
    run: Callable[[World], object],
    kind: str,
) -> None:
    seen = _fake_operation(monkeypatch, where, run)
    result = CliRunner().invoke(app, [*command, "-s", "staging", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == kind
    assert seen == [DeploymentSource(stack="staging")]


def test_status_honours_short_stack_and_format_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_operation(monkeypatch, "koinonia_infra.ops.status.deployment_status", _status)
    result = CliRunner().invoke(app, ["status", "-s", "staging", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert [s["role"] for s in json.loads(result.stdout)["services"]] == ["api-1", "api-2", "edge"]
    assert seen == [DeploymentSource(stack="staging")]


def test_a_drill_report_in_markdown_with_short_format(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_operation(monkeypatch, "koinonia_infra.ops.drill.drill_failover", _drill)
    result = CliRunner().invoke(app, ["drill", "failover", "--yes", "-f", "markdown"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# ")
    assert "api-1" in result.stdout
