"""`verify` end to end against a fake deployment (local servers, no binaries): exit codes, the
table, JSON and Markdown a user gets, and the Render API checks through a fake client."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from verify_servers import FakeDeployment

from koinonia_infra.cli import app
from koinonia_infra.descriptor import parse_descriptor
from koinonia_infra.errors import RenderApiError
from koinonia_infra.verify import VerifyOptions, run_verify

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_render_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RENDER_API_KEY", "RENDER_APIKEY", "RENDER_API_URL"):
        monkeypatch.delenv(var, raising=False)


def write_outputs(tmp_path: Path, dep: FakeDeployment, **extra: Any) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(dep.descriptor(**extra)))
    return path


def verify_cli(*args: str) -> Any:
    return runner.invoke(app, ["verify", *args])


def test_healthy_deployment_passes_with_measurements(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    outputs = write_outputs(tmp_path, fake_deployment)
    report = tmp_path / "signoff.md"
    result = verify_cli(
        "--outputs", str(outputs), "-n", "100", "-f", "json", "--report", str(report)
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schemaVersion"] == 1
    assert data["passed"] is True
    by = {(c["id"], c["target"]): c for c in data["checks"]}
    dist = by[("distribution", "edge")]
    assert dist["values"]["counts"] == {"api-1": 50, "api-2": 50}
    assert by[("error-rate", "edge")]["values"]["failed"] == 0
    assert by[("latency", "all")]["values"]["count"] == 100
    assert by[("instance-health", "api-1")]["status"] == "pass"
    # No key anywhere: the Render API checks are skipped with the reason, not passed.
    assert by[("config-parity", "all")]["status"] == "skip"
    assert "RENDER_API_KEY" in by[("config-parity", "all")]["reason"]
    assert data["summary"] == {"passed": 9, "failed": 0, "skipped": 3}
    markdown = report.read_text()
    assert "**PASSED**" in markdown
    assert "- [x] Traffic through the edge reaches every instance" in markdown
    assert "api-1 50.0% · api-2 50.0%" in markdown
    assert "- [ ] Same configuration on every instance" in markdown
    assert "CPU and memory" in markdown  # the manual part


def test_table_output(tmp_path: Path, fake_deployment: FakeDeployment) -> None:
    result = verify_cli("--outputs", str(write_outputs(tmp_path, fake_deployment)), "-n", "20")
    assert result.exit_code == 0, result.output
    for word in ("check", "target", "result", "measured", "threshold", "Load distribution", "PASS"):
        assert word in result.stdout
    assert "all checks passed" in result.stderr


def test_degraded_instance_fails_naming_what_is_down(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    inst = fake_deployment.instances[1]
    inst.status = 503
    inst.health = {"status": "degraded", "database": "ok", "redis": "down"}
    result = verify_cli("--outputs", str(write_outputs(tmp_path, fake_deployment)), "-n", "40")
    assert result.exit_code == 1
    assert "✗ instance-health api-2: HTTP 503; status degraded; redis down" in result.stdout
    assert "instance-health api-1" not in result.stdout.split("✗", 1)[1]
    assert "verification failed" in result.stderr
    assert "Traceback" not in result.output


def test_undeclared_upstream_fails_distribution(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    fake_deployment.foreign = True
    result = verify_cli(
        "--outputs", str(write_outputs(tmp_path, fake_deployment)), "-n", "10", "-f", "json"
    )
    assert result.exit_code == 1
    dist = next(c for c in json.loads(result.stdout)["checks"] if c["id"] == "distribution")
    assert "undeclared upstream(s): 10.9.9.9:8080 (10)" in dist["reason"]


def test_dead_instance_fails_distribution_naming_the_other(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    fake_deployment.instances[0].up = False
    result = verify_cli(
        "--outputs", str(write_outputs(tmp_path, fake_deployment)), "-n", "30", "-f", "json"
    )
    assert result.exit_code == 1
    checks = {(c["id"], c["target"]): c for c in json.loads(result.stdout)["checks"]}
    assert (
        checks[("distribution", "edge")]["reason"] == "only api-2 answered (30 of 30); api-1 got 0"
    )
    assert "connection closed" in checks[("instance-health", "api-1")]["reason"]
    assert checks[("instance-health", "api-2")]["status"] == "pass"
    assert checks[("error-rate", "edge")]["status"] == "pass"


def test_wait_passes_once_the_instance_recovers(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    inst = fake_deployment.instances[0]
    inst.status = 503
    inst.health = {"status": "degraded", "database": "down", "redis": "ok"}

    def recover() -> None:
        inst.status = 200
        inst.health = {
            "status": "ok", "database": "connected", "redis": "connected",
            "environment": "production",
        }  # fmt: skip

    import threading

    timer = threading.Timer(1.5, recover)
    timer.start()
    try:
        result = verify_cli(
            "--outputs", str(write_outputs(tmp_path, fake_deployment)),
            "-n", "20", "--wait", "15", "-f", "json",
        )  # fmt: skip
    finally:
        timer.cancel()
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["attempts"] >= 2
    assert data["durationSeconds"] < 10
    assert "retrying in" in result.stderr


def test_wait_reports_the_last_observation_at_the_deadline(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    inst = fake_deployment.instances[0]
    inst.status = 503
    inst.health = {"status": "degraded", "database": "down", "redis": "ok"}
    t0 = time.monotonic()
    result = verify_cli(
        "--outputs", str(write_outputs(tmp_path, fake_deployment)),
        "-n", "10", "--wait", "2", "-f", "json",
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    assert result.exit_code == 1
    assert 2 <= elapsed < 8
    data = json.loads(result.stdout)
    assert data["attempts"] >= 2
    check = next(
        c for c in data["checks"] if c["target"] == "api-1" and c["id"] == "instance-health"
    )
    assert check["reason"] == "HTTP 503; status degraded; database down"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"edgeUrl": "http://x"}', "instances: Field required"),
        ('{"edgeUrl": "http://x", "instances": []}', "instances: empty"),
    ],
)
def test_malformed_outputs_file_is_a_usage_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = verify_cli("--outputs", str(path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_two_sources_is_a_usage_error(tmp_path: Path) -> None:
    result = verify_cli("--outputs", str(tmp_path / "x.json"), "--target", "sandbox")
    assert result.exit_code == 2
    assert "choose one of" in result.stderr


# ------------------------------------------------------------------------------------------------
# Render API checks (parity, deploy status) through a fake client at the seam
# ------------------------------------------------------------------------------------------------


@dataclass
class FakeService:
    id: str
    suspended: str = "not_suspended"


@dataclass
class FakeDeploy:
    id: str
    status: str
    commit_id: str | None = "abcdef0123"


class FakeRender:
    def __init__(self, env: dict[str, dict[str, str]], deploys: dict[str, str]) -> None:
        self.env = env
        self.deploys = deploys
        self.suspended: set[str] = set()
        self.broken = False

    def env_vars(self, service_id: str) -> dict[str, str]:
        if self.broken:
            raise RenderApiError("api.render.com: the API key was rejected (401)")
        return dict(self.env[service_id])

    def get_service(self, service_id: str) -> FakeService:
        state = "suspended" if service_id in self.suspended else "not_suspended"
        return FakeService(service_id, state)

    def latest_deploy(self, service_id: str) -> FakeDeploy | None:
        status = self.deploys.get(service_id)
        return FakeDeploy(f"dep-{service_id}", status) if status else None


SECRET_DB_1 = "postgres://koinonia:s3cret-one@db-a:5432/koinonia"
SECRET_DB_2 = "postgres://koinonia:s3cret-two@db-b:5432/koinonia"


def make_render(db2: str = SECRET_DB_1) -> FakeRender:
    base = {"REDIS_URL": "redis://cache:6379", "NODE_ENV": "production", "PORT": "8080"}
    return FakeRender(
        env={
            "srv-1": {**base, "DATABASE_URL": SECRET_DB_1},
            "srv-2": {**base, "DATABASE_URL": db2},
        },
        deploys={"srv-1": "live", "srv-2": "live"},
    )


def run(dep: FakeDeployment, render: FakeRender) -> Any:
    descriptor = parse_descriptor(dep.descriptor(), source="test")
    return run_verify(descriptor, VerifyOptions(requests=10), render=render)  # type: ignore[arg-type]


def test_parity_and_deploy_status_pass(fake_deployment: FakeDeployment) -> None:
    report = run(fake_deployment, make_render())
    assert report.passed
    checks = {(c.id, c.target): c for c in report.checks}
    assert checks[("config-parity", "all")].measured == "2 instance(s), 4 keys, fingerprints match"
    assert checks[("deploy-status", "api-2")].status == "pass"


def test_differing_database_url_fails_parity_without_values(
    fake_deployment: FakeDeployment,
) -> None:
    report = run(fake_deployment, make_render(db2=SECRET_DB_2))
    assert not report.passed
    parity = next(c for c in report.checks if c.id == "config-parity")
    assert parity.status == "fail"
    assert parity.reason is not None
    assert parity.reason.startswith("DATABASE_URL differs (api-1 ")
    everything = json.dumps(report.to_json()) + report.to_markdown()
    for secret in ("s3cret", "db-a", "db-b", "postgres://"):
        assert secret not in everything


def test_missing_key_and_suspended_service(fake_deployment: FakeDeployment) -> None:
    render = make_render()
    del render.env["srv-2"]["PORT"]
    render.suspended.add("srv-1")
    render.deploys["srv-2"] = "update_failed"
    report = run(fake_deployment, render)
    checks = {(c.id, c.target): c for c in report.checks}
    assert checks[("config-parity", "all")].reason == "api-2 lacks PORT"
    assert checks[("deploy-status", "api-1")].reason == "service is suspended"
    assert (
        checks[("deploy-status", "api-2")].reason == "latest deploy update_failed (expected live)"
    )


def test_render_api_error_fails_the_check_with_one_line(fake_deployment: FakeDeployment) -> None:
    render = make_render()
    render.broken = True
    report = run(fake_deployment, render)
    parity = next(c for c in report.checks if c.id == "config-parity")
    assert parity.status == "fail"
    assert parity.reason == (
        "api-1: Render API: api.render.com: the API key was rejected (401); "
        "api-2: Render API: api.render.com: the API key was rejected (401)"
    )
