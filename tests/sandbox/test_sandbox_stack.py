"""`sandbox up --stack`: the sandbox runs the stack's edge settings (production's Caddyfile, from
the same render_caddyfile) and `verify --target sandbox` judges it with the stack's thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from koinonia_infra.caddy import CADDYFILE_ENV, render_caddyfile
from koinonia_infra.errors import ConfigError
from koinonia_infra.sandbox.stack import (
    SANDBOX_EDGE_ENV,
    SandboxStack,
    edge_settings,
    read_sandbox_stack,
    resolve_sandbox_stack,
    stack_for_supervisor,
    supervisor_stack,
    write_sandbox_stack,
)
from koinonia_infra.settings import ApiSettings, EdgeSettings, VerifySettings

CLI = [sys.executable, "-c", "from koinonia_infra.cli import main; main()"]

# Every value differs from EdgeSettings' defaults that reach the Caddyfile.
LAB_STACK = """\
config:
  koinonia:ownerId: tea-lab000000000000000000
  koinonia:edge:
    healthCheckIntervalSeconds: 0.7
    healthCheckTimeoutSeconds: 0.9
    retryWindowSeconds: 4
    retryIntervalMs: 70
    failDurationSeconds: 1.5
    dialTimeoutSeconds: 0.6
    upstreamResponseTimeoutSeconds: 2.5
    clientHeaderTimeoutSeconds: 7
    clientBodyTimeoutSeconds: 33
    clientIdleTimeoutSeconds: 44
  koinonia:verify:
    requests: 40
    concurrency: 4
    p95Ms: 1234
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "Pulumi.yaml").write_text("name: koinonia\nruntime: python\n")
    (folder / "Pulumi.lab.yaml").write_text(LAB_STACK)
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(folder))
    monkeypatch.delenv(SANDBOX_EDGE_ENV, raising=False)
    return folder


def test_the_named_stack_gives_its_edge_and_verify_settings(project: Path) -> None:
    chosen = resolve_sandbox_stack("lab")
    assert chosen.name == "lab"
    assert chosen.source == str(project / "Pulumi.lab.yaml")
    assert chosen.edge.client_idle_timeout_seconds == 44
    assert chosen.edge != EdgeSettings()
    assert chosen.verify.p95_ms == 1234


def test_by_default_the_prod_stack_file_when_there_is_one(project: Path) -> None:
    assert resolve_sandbox_stack(None) == SandboxStack()  # no Pulumi.prod.yaml: defaults
    (project / "Pulumi.prod.yaml").write_text(LAB_STACK)
    chosen = resolve_sandbox_stack(None)
    assert chosen.name == "prod"
    assert chosen.edge.retry_window_seconds == 4


def test_stack_none_and_no_project_mean_the_defaults(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "Pulumi.prod.yaml").write_text(LAB_STACK)
    assert resolve_sandbox_stack("none") == SandboxStack()
    monkeypatch.delenv("KOINONIA_PROJECT_DIR")
    monkeypatch.chdir(tmp_path)  # no Pulumi.yaml here or above
    assert resolve_sandbox_stack(None) == SandboxStack()


def test_a_missing_stack_file_is_a_config_error(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"Pulumi\.nope\.yaml: stack file not found"):
        resolve_sandbox_stack("nope")


def test_the_choice_reaches_the_supervisor_and_the_state_dir_keeps_it(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert read_sandbox_stack(tmp_path) == SandboxStack()  # nothing written: defaults
    assert supervisor_stack() == SandboxStack()  # started without one: defaults
    chosen = resolve_sandbox_stack("lab")
    for key, value in stack_for_supervisor(chosen).items():
        monkeypatch.setenv(key, value)
    assert supervisor_stack() == chosen
    write_sandbox_stack(tmp_path, chosen)
    assert read_sandbox_stack(tmp_path) == chosen
    assert edge_settings(chosen) == chosen.edge


def test_the_test_override_wins_over_the_stack(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SANDBOX_EDGE_ENV, '{"clientIdleTimeoutSeconds": 2}')
    assert edge_settings(resolve_sandbox_stack("lab")) == EdgeSettings(
        client_idle_timeout_seconds=2
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [("{bad", "Expecting property name"), ('{"clientIdleTimeoutSeconds": -1}', "greater than")],
)
def test_a_bad_sandbox_edge_override_is_one_config_error(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv(SANDBOX_EDGE_ENV, raw)
    with pytest.raises(ConfigError, match=f"^{SANDBOX_EDGE_ENV}: .*{message}") as err:
        edge_settings(SandboxStack())
    assert "\n" not in str(err.value)


def test_monitor_judges_the_sandbox_by_the_verify_thresholds_of_its_stack(
    project: Path, tmp_path: Path
) -> None:
    from koinonia_infra.monitor.run import rules_for
    from koinonia_infra.targets import DeploymentSource

    write_sandbox_stack(tmp_path, resolve_sandbox_stack("lab"))
    _, verify = rules_for(DeploymentSource(target="sandbox", state_dir=tmp_path))
    assert verify.p95_ms == 1234


def test_the_drills_deadlines_follow_the_edge_the_sandbox_runs(
    project: Path, tmp_path: Path
) -> None:
    from koinonia_infra.descriptor import Descriptor
    from koinonia_infra.ops.timing import resolve_timing

    descriptor = Descriptor.model_validate(
        {"stack": "sandbox", "sandboxTiming": "fast", "edgeUrl": "http://127.0.0.1:1",
         "instances": [{"number": 1, "name": "api-1", "serviceId": "srv-1",
                        "url": "http://127.0.0.1:2", "privateAddress": "127.0.0.1:2"}]}
    )  # fmt: skip
    write_sandbox_stack(tmp_path, SandboxStack())
    default = resolve_timing(descriptor, from_stack=None, state_dir=tmp_path)
    slow = EdgeSettings(health_check_interval_seconds=20, fail_duration_seconds=60)
    write_sandbox_stack(tmp_path, SandboxStack("slow", "Pulumi.slow.yaml", edge=slow))
    timing = resolve_timing(descriptor, from_stack=None, state_dir=tmp_path)
    # The edge notices a return only after an active check and the fail duration: 78 s more.
    assert timing.rejoin_timeout_seconds > default.rejoin_timeout_seconds + 78
    assert timing.drain_timeout_seconds > default.drain_timeout_seconds + 78


def _cli(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=240, env=env, check=False
    )


@pytest.mark.integration
def test_the_sandbox_runs_the_stacks_caddyfile_and_verify_its_thresholds(
    project: Path, sandbox_state_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != SANDBOX_EDGE_ENV}
    up = _cli(
        "sandbox", "up", "--stack", "lab", "--state-dir", sandbox_state_dir, "--format", "json",
        env=env,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    report = json.loads(up.stdout)
    assert report["stack"] == "lab"
    assert report["stackFile"] == str(project / "Pulumi.lab.yaml")

    lab = resolve_sandbox_stack("lab")
    descriptor = report["descriptor"]
    upstreams = [i["url"].removeprefix("http://") for i in descriptor["instances"]]
    expected = render_caddyfile(
        upstreams,
        lab.edge,
        health_path=ApiSettings().health_check_path,
        listen=f":{descriptor['edgeUrl'].rsplit(':', 1)[1]}",
        bind="127.0.0.1",
    )
    # What Caddy runs (the start command wrote it) and what Render's API reports as the edge's
    # env var: both the stack's production Caddyfile, not the defaults'.
    assert (sandbox_state_dir / "caddy" / "Caddyfile").read_text() == expected + "\n"
    assert expected != render_caddyfile(
        upstreams, EdgeSettings(), health_path="/health",
        listen=f":{descriptor['edgeUrl'].rsplit(':', 1)[1]}", bind="127.0.0.1",
    )  # fmt: skip
    key = json.loads((sandbox_state_dir / "descriptor.json").read_text())["renderApiKey"]
    edge_id = descriptor["edge"]["serviceId"]
    env_vars = httpx.get(
        f"{descriptor['renderApiUrl']}/services/{edge_id}/env-vars",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    values = {e["envVar"]["key"]: e["envVar"]["value"] for e in env_vars}
    assert values[CADDYFILE_ENV] == expected

    verify = _cli(
        "verify", "--target", "sandbox", "--state-dir", sandbox_state_dir, "--format", "json",
        env=env,
    )  # fmt: skip
    thresholds = json.loads(verify.stdout)["thresholds"]
    assert thresholds["p95Ms"] == 1234
    assert thresholds["requests"] == 40
    assert thresholds["concurrency"] == 4
    assert thresholds["p95Ms"] != VerifySettings().p95_ms


@pytest.mark.integration
def test_stack_none_runs_the_defaults(project: Path, sandbox_state_dir: Path) -> None:
    (project / "Pulumi.prod.yaml").write_text(LAB_STACK)
    env = {k: v for k, v in os.environ.items() if k != SANDBOX_EDGE_ENV}
    up = _cli("sandbox", "up", "--stack", "none", "--state-dir", sandbox_state_dir, env=env)
    assert up.returncode == 0, up.stderr
    assert "edge and verify settings: defaults" in up.stderr + up.stdout
    descriptor = json.loads((sandbox_state_dir / "descriptor.json").read_text())
    upstreams = [i["url"].removeprefix("http://") for i in descriptor["instances"]]
    expected = render_caddyfile(
        upstreams, EdgeSettings(), health_path="/health",
        listen=f":{descriptor['edgeUrl'].rsplit(':', 1)[1]}", bind="127.0.0.1",
    )  # fmt: skip
    assert (sandbox_state_dir / "caddy" / "Caddyfile").read_text() == expected + "\n"
