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


def test_slow_instance_fails_latency_similarity_and_its_own_latency(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    fake_deployment.instances[1].delay = 0.05  # api-2 answers in ≥ 50 ms, api-1 at once
    result = verify_cli(
        "--outputs", str(write_outputs(tmp_path, fake_deployment)), "-n", "20", "-c", "2",
        "-f", "json", "--p95-ms", "40",
    )  # fmt: skip
    assert result.exit_code == 1
    checks = {(c["id"], c["target"]): c for c in json.loads(result.stdout)["checks"]}
    similarity = checks[("latency-similarity", "all")]
    assert similarity["status"] == "fail"
    assert similarity["reason"].startswith("api-2 p50 is ")
    assert similarity["values"]["p50Ms"]["api-2"] >= 50
    assert similarity["values"]["ratio"] >= 5  # api-1's p50 counts as the 10 ms floor
    assert similarity["values"]["ratioLowerBound"] > 2
    assert similarity["values"]["samples"] == {"api-1": 40, "api-2": 40}
    assert checks[("latency", "api-2")]["status"] == "fail"
    assert checks[("latency", "api-1")]["status"] == "pass"
    assert checks[("latency", "api-1")]["values"]["count"] == 10


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
    created_at: None = None  # no build window known: build logs of the last hour
    finished_at: None = None


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

    def service_json(self, service_id: str) -> dict[str, Any]:
        return {"id": service_id, "ownerId": "tea-fake"}

    def list_logs(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []  # no build errors


SECRET_DB_1 = "postgres://user:placeholder-one@db-a.invalid:5432/app"
SECRET_DB_2 = "postgres://user:placeholder-two@db-b.invalid:5432/app"


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
    for secret in ("placeholder-one", "placeholder-two", "db-a", "db-b", "postgres://"):
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


# ------------------------------------------------------------------------------------------------
# Thresholds: defaults, then the stack's koinonia:verify (with --stack), then flags
# ------------------------------------------------------------------------------------------------


def test_threshold_flags_decide_pass_and_fail(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    outputs = str(write_outputs(tmp_path, fake_deployment))
    result = verify_cli(
        "--outputs", outputs, "-n", "20", "-f", "json",
        "--p95-ms", "0.001", "--environment", "staging", "--share-tolerance", "0.5",
        "--p50-ratio", "1.5", "--max-error-rate", "0", "--timeout", "2",
    )  # fmt: skip
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["thresholds"] == {
        "requests": 20, "concurrency": 16, "shareTolerancePoints": 0.5, "p95Ms": 0.001,
        "p50Ratio": 1.5, "p50FloorMs": 10.0, "maxErrorRatePercent": 0.0,
        "environment": "staging", "waitSeconds": 0.0, "timeoutSeconds": 2.0,
        # Derived: 3 timeouts + 15 s for the Render API + rounds at twice a 0.001 ms p95.
        "deadlineSeconds": 21.0,
    }  # fmt: skip
    by = {(c["id"], c["target"]): c for c in data["checks"]}
    latency = by[("latency", "all")]
    assert latency["status"] == "fail"
    assert latency["threshold"] == "p95 ≤ 0.001 ms"
    assert latency["reason"].endswith("> 0.001 ms")
    health = by[("instance-health", "api-1")]
    assert health["reason"] == "environment production (expected staging)"
    # An even split still passes a tight tolerance: the flag changed the threshold, not the data.
    assert by[("distribution", "edge")]["threshold"].startswith("each of 2 instance(s) 50.0% ± 0.5")
    assert by[("distribution", "edge")]["status"] == "pass"


def test_bad_threshold_flag_is_a_usage_error(tmp_path: Path) -> None:
    result = verify_cli("--outputs", str(tmp_path / "x.json"), "--p50-ratio", "0.5")
    assert result.exit_code == 2
    assert "--p50-ratio" in result.output
    assert "Traceback" not in result.output


def _stack_project(tmp_path: Path, verify_yaml: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: koinonia\nruntime: python\n")
    (project / "Pulumi.staging.yaml").write_text(
        "config:\n  koinonia:ownerId: tea-koinoniatest000000000\n  koinonia:verify:\n"
        + "".join(f"    {line}\n" for line in verify_yaml.strip().splitlines())
    )
    return project


def test_stack_config_sets_thresholds_and_flags_override_it(
    tmp_path: Path, fake_deployment: FakeDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import koinonia_infra.deploy.outputs

    project = _stack_project(tmp_path, "p95Ms: 0.002\nrequests: 12\nshareTolerancePoints: 20")
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(project))
    seen: list[str] = []
    handed: list[Any] = []

    def read_descriptor(stack: str, *, settings: Any = None, api_url: Any = None) -> Any:
        # The engine boundary: no Pulumi CLI here.
        seen.append(stack)
        handed.append(settings)
        return parse_descriptor(fake_deployment.descriptor(), source=stack)

    import koinonia_infra.settings

    loads: list[Path] = []
    real_load = koinonia_infra.settings.load_settings

    def counting_load(path: Path) -> Any:
        loads.append(path)
        return real_load(path)

    monkeypatch.setattr(koinonia_infra.settings, "load_settings", counting_load)
    monkeypatch.setattr(koinonia_infra.deploy.outputs, "read_descriptor", read_descriptor)
    result = verify_cli("--stack", "staging", "-f", "json")
    assert seen == ["staging"]
    # The stack file is read once, and its settings reach the descriptor's reader.
    assert [p.name for p in loads] == ["Pulumi.staging.yaml"]
    assert handed[0] is not None
    assert handed[0].verify.p95_ms == 0.002
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["thresholds"]["p95Ms"] == 0.002
    assert data["thresholds"]["shareTolerancePoints"] == 20.0
    assert data["traffic"]["requests"] == 12
    assert next(c for c in data["checks"] if c["id"] == "latency")["status"] == "fail"

    flagged = verify_cli("--stack", "staging", "-f", "json", "--p95-ms", "5000", "-n", "8")
    assert flagged.exit_code == 0, flagged.output
    data = json.loads(flagged.stdout)
    assert data["thresholds"]["p95Ms"] == 5000.0
    assert data["thresholds"]["shareTolerancePoints"] == 20.0  # from the stack, not overridden
    assert data["traffic"]["requests"] == 8


def test_json_schema_matches_the_documented_one(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    """docs/verify.md promises these keys for schemaVersion 1: renaming one breaks users."""
    result = verify_cli("--outputs", str(write_outputs(tmp_path, fake_deployment)), "-n", "4",
                        "-f", "json")  # fmt: skip
    data = json.loads(result.stdout)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "verify.md").read_text()
    example = json.loads(doc.split("```json\n", 1)[1].split("```", 1)[0])
    assert set(data) == set(example)
    assert set(data["summary"]) == set(example["summary"])
    assert set(data["thresholds"]) == set(example["thresholds"])
    assert set(data["traffic"]) == set(example["traffic"])
    assert set(data["traffic"]["latency"]) == set(example["traffic"]["latency"])
    assert set(data["deployment"]) == set(example["deployment"])
    assert set(data["deployment"]["instances"][0]) == set(example["deployment"]["instances"][0])
    for check in data["checks"]:
        assert set(check) == set(example["checks"][0])
    distribution = next(c for c in data["checks"] if c["id"] == "distribution")
    assert set(distribution["values"]) == set(example["checks"][0]["values"])
