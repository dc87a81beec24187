"""The engine commands through the real typer app: a fake engine at the seam for orchestration,
and a stub `pulumi` executable on PATH (recording its argv) for the real adapter."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from engine_fakes import (
    ENV,
    OUTPUTS,
    PG,
    SENTINEL,
    WEB,
    FakeEngine,
    Recorder,
    diagnostic_event,
    plan_of,
    step_event,
    summary_event,
)
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.deploy import wiring
from koinonia_infra.errors import OperationFailed, StackLocked

runner = CliRunner()
HERE = Path(__file__).resolve().parent


def _all(result: Any) -> str:
    return str(result.stdout) + str(result.stderr)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, project: Path) -> dict[str, Any]:
    """Replace the engine and the Render/verify seams; the sentinel is the Render key."""
    monkeypatch.setenv("RENDER_API_KEY", SENTINEL)
    monkeypatch.delenv("KOINONIA_DEBUG", raising=False)
    state: dict[str, Any] = {"recorder": Recorder(), "engine": None, "opened": []}

    def open_engine(stack: str, **_: Any) -> FakeEngine:
        state["opened"].append(stack)
        assert state["engine"] is not None, "no engine expected in this test"
        return state["engine"]  # type: ignore[no-any-return]

    def build_seams(stack: str, ui: Any, *, deploy_timeout: float) -> Any:
        return state["recorder"].seams(ui)

    monkeypatch.setattr(wiring, "open_engine", open_engine)
    monkeypatch.setattr(wiring, "build_seams", build_seams)
    monkeypatch.setattr("koinonia_infra.deploy.outputs.render_edge_lookup", lambda _url=None: None)
    return state


LEAKY_EVENTS = [
    step_event("resourcePreEvent", "update", ENV, "api-1-env", diffs=["envVars"], planning=True),
    diagnostic_event(f"provider echoed apiKey={SENTINEL}", severity="warning"),
    summary_event({"update": 1, "same": 4}),
]


def test_preview_json_is_the_documented_shape_and_never_leaks(fake: dict[str, Any]) -> None:
    fake["engine"] = FakeEngine(plan_of(("update", ENV, "api-1-env")), events=LEAKY_EVENTS)
    result = runner.invoke(app, ["preview", "--format", "json"])
    assert result.exit_code == 0, _all(result)
    data = json.loads(result.stdout)
    assert data == {
        "stack": "prod",
        "changeSummary": {"update": 1},
        "steps": [
            {
                "op": "update",
                "urn": "urn:pulumi:prod::koinonia::render:services:EnvVarsForService::api-1-env",
                "type": "render:services:EnvVarsForService",
            }
        ],
    }
    assert "warning: provider echoed apiKey=[secret]" in result.stderr
    assert SENTINEL not in _all(result)


def test_up_without_terminal_and_without_yes_exits_2(fake: dict[str, Any]) -> None:
    fake["engine"] = FakeEngine(plan_of(("update", WEB, "api-1")))
    result = runner.invoke(app, ["up"])
    assert result.exit_code == 2
    assert "refusing to update stack prod without confirmation: no terminal; pass --yes" in (
        result.stderr
    )
    assert "up" not in fake["engine"].calls


def test_up_yes_json_reports_deploys_and_verify(fake: dict[str, Any]) -> None:
    fake["engine"] = FakeEngine(plan_of(("update", WEB, "api-1")), events=LEAKY_EVENTS)
    result = runner.invoke(app, ["up", "--yes", "--format", "json"])
    assert result.exit_code == 0, _all(result)
    data = json.loads(result.stdout)
    assert data["updated"] is True
    assert [d["status"] for d in data["deploys"]] == ["live", "live", "live"]
    assert data["verify"] == {"passed": True, "summary": "all checks passed"}
    assert SENTINEL not in _all(result)


def test_up_failed_deploy_exits_1_naming_service_and_status(fake: dict[str, Any]) -> None:
    fake["engine"] = FakeEngine(plan_of(("update", WEB, "api-1")))
    fake["recorder"] = Recorder(deploy_status="build_failed")
    result = runner.invoke(app, ["up", "--yes"])
    assert result.exit_code == 1
    assert "error: deploy of srv-api1 (srv-api1) ended build_failed" in result.stderr
    assert "Traceback" not in _all(result)


def test_up_refuses_datastore_replacement_with_exit_2(fake: dict[str, Any]) -> None:
    fake["engine"] = FakeEngine(plan_of(("replace", PG, "postgres"), keys=("version",)))
    result = runner.invoke(app, ["up", "--yes"])
    assert result.exit_code == 2
    assert "refusing to replace datastore postgres" in result.stderr
    assert "!! datastore postgres: its data would be lost" in result.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["destroy-instance", "3", "--yes"], "instance 3 is not declared in api.instances (1, 2)"),
    (["destroy-instance", "0", "--yes"], "instance 0 is not declared in api.instances (1, 2)"),
])  # fmt: skip
def test_destroy_instance_undeclared_exits_2_before_any_engine(
    fake: dict[str, Any], argv: list[str], message: str
) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in result.stderr
    assert fake["opened"] == []


def test_destroy_instance_refuses_the_last_instance(fake: dict[str, Any], project: Path) -> None:
    path = project / "Pulumi.prod.yaml"
    path.write_text(path.read_text().replace("instances: [1, 2]", "instances: [2]"))
    result = runner.invoke(app, ["destroy-instance", "2", "--yes"])
    assert result.exit_code == 2
    assert "it is the last instance" in result.stderr
    assert fake["opened"] == []


def test_destroy_instance_yes_removes_it_and_says_to_commit(
    fake: dict[str, Any], project: Path
) -> None:
    after = {**OUTPUTS, "instances": OUTPUTS["instances"][:1]}
    fake["engine"] = FakeEngine(
        plan_of(
            ("delete", WEB, "api-2"), ("delete", ENV, "api-2-env"), ("update", ENV, "edge-env")
        ),
        outputs_after_up=after,
    )
    result = runner.invoke(app, ["destroy-instance", "2", "--yes"])
    assert result.exit_code == 0, _all(result)
    assert "instances: [1]" in (project / "Pulumi.prod.yaml").read_text()
    assert (
        "commit Pulumi.prod.yaml now: otherwise the next deploy from main brings instance 2 back"
        in (result.stderr)
    )
    assert SENTINEL not in _all(result)


DESTROY_2 = plan_of(
    ("delete", WEB, "api-2"), ("delete", ENV, "api-2-env"), ("update", ENV, "edge-env")
)


@pytest.mark.parametrize(("error", "code"), [
    (OperationFailed("pulumi up failed for stack prod"), 1),
    (StackLocked("stack prod is locked by another update"), 4),
    (KeyboardInterrupt(), 130),
])  # fmt: skip
def test_destroy_instance_failed_update_restores_the_file_and_says_so(
    fake: dict[str, Any], project: Path, error: BaseException, code: int
) -> None:
    path = project / "Pulumi.prod.yaml"
    before = path.read_bytes()
    fake["engine"] = FakeEngine(DESTROY_2, up_error=error)
    result = runner.invoke(app, ["destroy-instance", "2", "--yes"])
    assert result.exit_code == code, _all(result)
    assert path.read_bytes() == before
    assert "Pulumi.prod.yaml restored to its previous content" in result.stderr
    # Nothing to commit: the file is back as it was.
    assert "commit Pulumi.prod.yaml" not in _all(result)
    assert "Traceback" not in _all(result)
    assert SENTINEL not in _all(result)


def test_up_interrupted_exits_130(fake: dict[str, Any]) -> None:
    fake["engine"] = FakeEngine(plan_of(("update", WEB, "api-1")), up_error=KeyboardInterrupt())
    result = runner.invoke(app, ["up", "--yes"])
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    assert fake["recorder"].waited == []


def test_outputs_json_is_the_descriptor(fake: dict[str, Any]) -> None:
    fake["engine"] = FakeEngine(plan_of())
    result = runner.invoke(app, ["outputs", "--format", "json"])
    assert result.exit_code == 0, _all(result)
    data = json.loads(result.stdout)
    assert data["stack"] == "prod"
    assert data["edgeUrl"] == OUTPUTS["edgeUrl"]
    assert [i["serviceId"] for i in data["instances"]] == ["srv-api1", "srv-api2"]
    assert data["edge"] == {"name": "koinonia-edge"}
    assert SENTINEL not in _all(result)


# ------------------------------------------------------------------------------------------
# The real adapter against a stub `pulumi` on PATH
# ------------------------------------------------------------------------------------------


EDGE_ENV_URN = "urn:pulumi:prod::koinonia::render:services:EnvVarsForService::edge-env"


@pytest.fixture
def stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path) -> dict[str, Path]:
    bindir = tmp_path / "stub" / "bin"
    bindir.mkdir(parents=True)
    exe = bindir / "pulumi"
    exe.write_text(f"#!{sys.executable}\n" + (HERE / "stub_pulumi.py").read_text())
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "argv.jsonl"
    events = tmp_path / "events.jsonl"
    pre = {
        "planning": True,
        "metadata": {"op": "update", "type": ENV, "provider": "", "urn": EDGE_ENV_URN},
    }
    summary = {
        "maybeCorrupt": False,
        "durationSeconds": 1,
        "resourceChanges": {"update": 1, "same": 6},
        "PolicyPacks": {},
    }
    events.write_text(
        json.dumps({"sequence": 1, "timestamp": 1, "resourcePreEvent": pre})
        + "\n"
        + json.dumps({"sequence": 2, "timestamp": 1, "summaryEvent": summary})
    )
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase-not-secret")
    monkeypatch.setenv("RENDER_API_KEY", SENTINEL)
    monkeypatch.delenv("RENDER_APIKEY", raising=False)
    monkeypatch.delenv("PULUMI_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("STUB_EXPECT_KEY", SENTINEL)
    monkeypatch.setenv("STUB_LOG", str(log))
    monkeypatch.setenv("STUB_EVENTS", str(events))
    monkeypatch.setenv("STUB_OUTPUTS", json.dumps(OUTPUTS))
    monkeypatch.delenv("KOINONIA_DEBUG", raising=False)
    monkeypatch.setattr("koinonia_infra.deploy.outputs.render_edge_lookup", lambda _url=None: None)
    return {"log": log, "events": events, "project": project}


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_stub_preview_argv_policy_pack_and_key_via_env(stub: dict[str, Path]) -> None:
    policy = stub["project"] / "policy"
    policy.mkdir()
    (policy / "PulumiPolicy.yaml").write_text("runtime: python\n")
    result = runner.invoke(app, ["preview", "--format", "json"])
    assert result.exit_code == 0, _all(result)
    assert json.loads(result.stdout)["steps"] == [
        {
            "op": "update",
            "urn": "urn:pulumi:prod::koinonia::render:services:EnvVarsForService::edge-env",
            "type": ENV,
        }
    ]
    assert "~  update           render:services:EnvVarsForService  edge-env" in result.stderr
    calls = _calls(stub["log"])
    argvs = [c["argv"] for c in calls]
    assert argvs[0] == ["version"]
    assert ["--non-interactive", "stack", "select", "--stack", "prod"] in argvs
    preview = next(a for a in argvs if "preview" in a)
    assert preview[preview.index("--policy-pack") + 1] == str(policy)
    assert "--color" in preview
    assert preview[preview.index("--color") + 1] == "never"
    # The key reached the engine through its environment, never through argv.
    # (`pulumi version` runs before the workspace exists, with the plain environment.)
    assert all(c["renderKeyInEnv"] for c in calls if c["argv"] != ["version"])
    assert all(SENTINEL not in " ".join(a) for a in argvs)
    assert all(c["cwd"] == str(stub["project"]) for c in calls if c["argv"] != ["version"])
    assert SENTINEL not in _all(result)
    # Project settings were never written back.
    assert (stub["project"] / "Pulumi.yaml").read_text() == (
        HERE.parents[1] / "Pulumi.yaml"
    ).read_text()


def test_stub_up_passes_yes_and_skips_secrets(
    stub: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    # The real adapter, but no real Render API behind the deploy wait and verify.
    monkeypatch.setattr(wiring, "build_seams", lambda stack, ui, **_: recorder.seams(ui))
    result = runner.invoke(app, ["up", "--yes", "--format", "json"])
    assert result.exit_code == 0, _all(result)
    assert json.loads(result.stdout)["updated"] is True
    assert recorder.waited == [["srv-api1", "srv-api2", "srv-edge"]]
    argvs = [c["argv"] for c in _calls(stub["log"])]
    up = next((a for a in argvs if "up" in a and "--skip-preview" in a), None)
    assert up is not None, _all(result)
    assert "--yes" in up
    assert "--suppress-outputs" in up
    history = next(a for a in argvs if "history" in a)
    assert "--show-secrets" not in history
    assert all(SENTINEL not in " ".join(a) for a in argvs)
    assert SENTINEL not in _all(result)


def test_stub_up_passes_target_and_exclude_urns(stub: dict[str, Path]) -> None:
    # `up` holds env changes out of the main update and applies them one targeted update at a
    # time: the URNs must reach the engine's own flags.
    from koinonia_infra.deploy.engine import open_stack

    env2 = "urn:pulumi:prod::koinonia::render:services:EnvVarsForService::api-2-env"
    engine = open_stack("prod", project_dir=stub["project"])
    engine.up(exclude=[env2])
    engine.up(target=[env2])
    argvs = [c["argv"] for c in _calls(stub["log"])]
    held, targeted = [a for a in argvs if "up" in a and "--skip-preview" in a]
    assert held[held.index("--exclude") + 1] == env2
    assert "--target" not in held
    assert targeted[targeted.index("--target") + 1] == env2
    assert "--exclude" not in targeted


def test_stub_locked_stack_exits_4(stub: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_EXIT", "255")
    monkeypatch.setenv("STUB_STDERR", "error: the stack is currently locked by 1 lock(s)")
    result = runner.invoke(app, ["preview"])
    assert result.exit_code == 4
    assert (
        "stack prod is locked by another update; if none is running: `pulumi cancel` / "
        "`pulumi stack export|import`"
    ) in result.stderr


def test_stub_missing_stack_says_how_to_create(
    stub: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_NO_STACK", "1")
    result = runner.invoke(app, ["preview"])
    assert result.exit_code == 2
    assert "stack prod does not exist in this backend: create it with `pulumi stack init prod`" in (
        result.stderr
    )


def test_stub_command_error_shows_last_meaningful_lines_redacted(
    stub: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_EXIT", "1")
    noise = "\n".join(f"    progress line {n}" for n in range(30))
    monkeypatch.setenv(
        "STUB_STDERR", f"{noise}\nerror: 401 Unauthorized: key {SENTINEL} rejected\n"
    )
    result = runner.invoke(app, ["preview"])
    assert result.exit_code == 1
    assert "pulumi preview failed for stack prod" in result.stderr
    assert "error: 401 Unauthorized: key [secret] rejected" in result.stderr
    assert "progress line 3" not in result.stderr
    assert SENTINEL not in _all(result)


def test_stub_engine_older_than_the_pin_exits_3(
    stub: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_VERSION", "3.100.0")
    result = runner.invoke(app, ["preview"])
    assert result.exit_code == 3
    assert "koinonia-infra engine install" in result.stderr


def test_engine_status_names_the_engine_and_version(stub: dict[str, Path]) -> None:
    result = runner.invoke(app, ["engine", "status", "--format", "json"])
    assert result.exit_code == 0, _all(result)
    data = json.loads(result.stdout)
    assert data["source"] == "PATH"
    assert data["command"].endswith("/stub/bin/pulumi")
    assert data["version"] == "3.272.0"
    assert data["matchesPin"] is True


def test_pinned_engine_is_preferred_over_path(stub: dict[str, Path], tmp_path: Path) -> None:
    from koinonia_infra.deploy.engine import PULUMI_VERSION, install_root

    pinned = install_root(PULUMI_VERSION) / "bin" / "pulumi"
    pinned.parent.mkdir(parents=True)
    pinned.write_text((tmp_path / "stub" / "bin" / "pulumi").read_text())
    pinned.chmod(0o755)
    result = runner.invoke(app, ["engine", "status"])
    assert result.exit_code == 0, _all(result)
    assert f"engine: {pinned} (pinned install)" in result.stdout


# ------------------------------------------------------------------------------------------
# Fail fast: engine, backend, passphrase, Render key
# ------------------------------------------------------------------------------------------


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path) -> Path:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    for var in (
        "PULUMI_BACKEND_URL",
        "PULUMI_ACCESS_TOKEN",
        "PULUMI_CONFIG_PASSPHRASE",
        "PULUMI_CONFIG_PASSPHRASE_FILE",
        "RENDER_API_KEY",
        "RENDER_APIKEY",
        "KOINONIA_DEBUG",
    ):
        monkeypatch.delenv(var, raising=False)
    return project


def test_no_engine_exits_3_naming_engine_install(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_ACCESS_TOKEN", SENTINEL)
    monkeypatch.setenv("RENDER_API_KEY", SENTINEL)
    result = runner.invoke(app, ["preview"])
    assert result.exit_code == 3
    assert "no Pulumi engine found: run `koinonia-infra engine install`" in result.stderr
    assert "https://get.pulumi.com" in result.stderr
    assert SENTINEL not in _all(result)


def test_engine_status_without_engine_exits_3(bare_env: Path) -> None:
    result = runner.invoke(app, ["engine", "status"])
    assert result.exit_code == 3
    assert "koinonia-infra engine install" in result.stderr


def test_no_backend_exits_3_saying_what_to_set(bare_env: Path) -> None:
    result = runner.invoke(app, ["preview"])
    assert result.exit_code == 3
    assert "no Pulumi backend configured: set PULUMI_ACCESS_TOKEN" in result.stderr
    assert "PULUMI_BACKEND_URL" in result.stderr


def test_diy_backend_without_passphrase_exits_3(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}/state")
    result = runner.invoke(app, ["preview"])
    assert result.exit_code == 3
    assert "set PULUMI_CONFIG_PASSPHRASE" in result.stderr


def test_missing_render_key_exits_3(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_ACCESS_TOKEN", SENTINEL)
    result = runner.invoke(app, ["preview"])
    assert result.exit_code == 3
    assert "no Render API key: set RENDER_API_KEY" in result.stderr
    assert SENTINEL not in _all(result)


def test_engine_install_failure_names_the_official_installer(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error

    from pulumi.automation import PulumiCommand

    def offline(*_: Any, **__: Any) -> Any:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(PulumiCommand, "install", offline)
    result = runner.invoke(app, ["engine", "install"])
    assert result.exit_code == 3
    assert "could not install pulumi 3.272.0 into" in result.stderr
    assert "Temporary failure in name resolution" in result.stderr
    assert "https://get.pulumi.com" in result.stderr
