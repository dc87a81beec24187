"""Where the drill's and the rollout's deadlines come from: the target, the stack, the flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ops_fakes import World
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.errors import ConfigError, OperationFailed
from koinonia_infra.ops.timing import OpsTiming, render_timing, resolve_timing, timing_for
from koinonia_infra.settings import settings_from_config


def sandbox_descriptor(timing: str) -> Any:
    return World().descriptor().model_copy(update={"stack": "sandbox", "sandbox_timing": timing})


def test_a_real_deployment_gets_renders_timings() -> None:
    timing = timing_for(World().descriptor())
    assert timing.target == "render"
    # Render's sequence (sources in koinonia_infra/ops/timing.py): a resume is a deploy, the old
    # instance serves 60 s after the switch, then SIGTERM and maxShutdownDelaySeconds (30).
    assert timing.resume_creates_deploy is True
    assert timing.overlap_seconds == 60.0
    assert timing.shutdown_delay_seconds == 30.0
    assert timing.deploy_appear_timeout_seconds == 60.0
    # A deploy may build and then spend Render's 15-minute health gate.
    assert timing.deploy_timeout_seconds >= 900.0
    assert timing.poll_interval_seconds == 5.0


def test_the_sandbox_gets_its_profiles_timings() -> None:
    fast = timing_for(sandbox_descriptor("fast"))
    render = timing_for(sandbox_descriptor("render"))
    assert fast.target == "sandbox (fast)"
    assert fast.resume_creates_deploy is False
    assert fast.overlap_seconds == 0.0
    assert render.target == "sandbox (render)"
    assert render.resume_creates_deploy is True
    assert 0 < render.overlap_seconds < 60.0  # Render's sequence, scaled down
    # Either is far shorter than Render's own: a stuck sandbox fails in seconds, not minutes.
    assert render.deploy_timeout_seconds < timing_for(World().descriptor()).deploy_timeout_seconds


def test_the_stack_sets_renders_deadlines_from_its_ops_api_and_edge_settings() -> None:
    settings = settings_from_config(
        {
            "ownerId": "tea-abc",
            "api": {"maxShutdownDelaySeconds": 120},
            "edge": {"healthCheckIntervalSeconds": 10},
            "ops": {"suspendTimeoutSeconds": 300, "overlapSeconds": 60, "pollIntervalSeconds": 2},
        }
    )
    timing = render_timing(settings)
    assert timing.suspend_timeout_seconds == 300.0
    assert timing.poll_interval_seconds == 2.0
    assert timing.shutdown_delay_seconds == 120.0
    assert timing.handover_seconds == 180.0
    # A slower edge check means a slower drain and rejoin.
    assert timing.drain_timeout_seconds > render_timing().drain_timeout_seconds
    assert timing.rejoin_timeout_seconds > render_timing().rejoin_timeout_seconds


def test_an_unknown_ops_key_is_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_config({"ownerId": "tea-abc", "ops": {"deployTimeout": 5}})
    assert "koinonia:ops.deployTimeout: unknown key; did you mean 'deployTimeoutSeconds'?" in str(
        info.value
    )


def test_resolve_reads_the_stack_file_then_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: koinonia\nruntime: python\n")
    (tmp_path / "Pulumi.staging.yaml").write_text(
        "config:\n"
        "  koinonia:ownerId: tea-abc\n"
        "  koinonia:ops:\n"
        "    deployTimeoutSeconds: 600\n"
        "    rejoinTimeoutSeconds: 90\n"
    )
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(tmp_path))
    real = World().descriptor()
    from_stack = resolve_timing(real, from_stack="staging")
    assert from_stack.deploy_timeout_seconds == 600.0
    assert from_stack.rejoin_timeout_seconds == 90.0
    flagged = resolve_timing(real, from_stack="staging", deploy_timeout=30, overlap=5)
    assert flagged.deploy_timeout_seconds == 30.0
    assert flagged.rejoin_timeout_seconds == 90.0
    assert flagged.overlap_seconds == 5.0
    # The sandbox is not a stack: its profile applies whatever the stack file says.
    sandbox = resolve_timing(sandbox_descriptor("fast"), from_stack="staging")
    assert sandbox.target == "sandbox (fast)"


@pytest.mark.parametrize(
    ("command", "flags", "expected"),
    [
        (
            ["drill", "failover", "--yes"],
            ["--suspend-timeout", "7", "--deploy-timeout", "8", "--rejoin-timeout", "9"],
            {
                "suspendTimeoutSeconds": 7.0,
                "deployTimeoutSeconds": 8.0,
                "rejoinTimeoutSeconds": 9.0,
            },
        ),
        (
            ["rollout", "--yes"],
            ["--timeout", "11", "--overlap", "0"],
            {"deployTimeoutSeconds": 11.0, "overlapSeconds": 0.0},
        ),
    ],
    ids=["drill", "rollout"],
)
def test_the_flags_reach_the_operation_and_the_timing_is_announced(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    flags: list[str],
    expected: dict[str, float],
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(World().descriptor().public_dict()))
    monkeypatch.setenv("RENDER_API_KEY", "rnd_fake_for_tests")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    seen: list[OpsTiming] = []

    def capture(*_args: object, timing: OpsTiming, **_kwargs: object) -> None:
        seen.append(timing)
        raise OperationFailed("stopped by the test")

    monkeypatch.setattr("koinonia_infra.ops.drill.run_failover_drill", capture)
    monkeypatch.setattr("koinonia_infra.ops.rollout.run_rollout", capture)
    result = CliRunner().invoke(app, [*command, "--outputs", str(outputs), *flags])
    assert result.exit_code == 1, result.output
    assert "stopped by the test" in result.stderr
    assert "render timing: suspend within" in result.stderr
    (timing,) = seen
    data = timing.to_json()
    assert {k: data[k] for k in expected} == expected


def test_resume_waits_as_long_as_a_resume_takes_on_the_target() -> None:
    # On Render a resume is a deploy (listed, built, live), then /health: the old fixed 120 s
    # would give up on a normal resume. The fast sandbox's resume is a process start.
    real = timing_for(World().descriptor())
    assert real.resume_timeout_seconds == (
        real.deploy_appear_timeout_seconds
        + real.deploy_timeout_seconds
        + real.healthy_timeout_seconds
    )
    assert real.resume_timeout_seconds > 900.0
    fast = timing_for(sandbox_descriptor("fast"))
    assert fast.resume_timeout_seconds == fast.healthy_timeout_seconds
