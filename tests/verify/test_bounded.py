"""`verify` stays bounded when the deployment fails, and says what happened: the early stop, the
overall deadline, the edge's own 503 told from a client timeout, and the similarity check's
statistics. Fake deployment on local servers (no binaries); the sandbox versions are in
test_verify_sandbox.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from verify_servers import FakeDeployment

from koinonia_infra.cli import app
from koinonia_infra.verify.checks import median_bounds
from koinonia_infra.verify.model import VerifyOptions
from koinonia_infra.verify.runner import stop_rule

runner = CliRunner()
DEGRADED = {"status": "degraded", "database": "ok", "redis": "down", "environment": "production"}


@pytest.fixture(autouse=True)
def _no_render_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RENDER_API_KEY", "RENDER_APIKEY", "RENDER_API_URL"):
        monkeypatch.delenv(var, raising=False)


def run(tmp_path: Path, dep: FakeDeployment, *args: str) -> tuple[Any, dict[str, Any], float]:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(dep.descriptor()))
    t0 = time.monotonic()
    result = runner.invoke(app, ["verify", "--outputs", str(outputs), "-f", "json", *args])
    elapsed = time.monotonic() - t0
    return result, json.loads(result.stdout), elapsed


def by_check(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["id"], c["target"]): c for c in data["checks"]}


def test_edge_giving_up_is_named_not_reported_as_a_timeout(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    # Every instance gone: the edge retries for its window (5.5 s here, over the former 5 s
    # client timeout), then answers 503 itself, with no upstream header.
    for inst in fake_deployment.instances:
        inst.up = False
    fake_deployment.retry_window = 5.5
    result, data, _ = run(tmp_path, fake_deployment, "-n", "16", "-c", "16")
    assert result.exit_code == 1
    checks = by_check(data)
    assert checks[("edge-health", "edge")]["reason"] == "edge answered 503 (no healthy upstream)"
    errors = checks[("error-rate", "edge")]
    assert set(errors["values"]["reasons"]) == {"edge answered 503 (no healthy upstream)"}
    assert "timed out" not in result.stdout
    assert data["thresholds"]["timeoutSeconds"] == 10.0


def test_failing_burst_stops_early_and_names_the_cause(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    # Both instances answer 503 "redis down", slowly: 2,000 requests would take 100 s.
    for inst in fake_deployment.instances:
        inst.health = dict(DEGRADED)
        inst.status = 503
        inst.delay = 0.4
    result, data, elapsed = run(tmp_path, fake_deployment, "-n", "2000", "-c", "8")
    assert result.exit_code == 1
    assert elapsed < 20
    stopped = data["traffic"]["stoppedEarly"]
    assert stopped.startswith("after ")
    assert "over the 0.1% allowed" in stopped
    assert data["traffic"]["plannedRequests"] == 2016
    checks = by_check(data)
    reason = checks[("error-rate", "edge")]["reason"]
    assert "x HTTP 503 from api-" in reason
    assert "burst stopped early" in reason
    assert reason.endswith("instances: api-1 redis down; api-2 redis down")
    for target in ("api-1", "api-2"):
        assert "redis down" in checks[("instance-health", target)]["reason"]
    # Not measured on a failing deployment: skipped with the reason, the run fails anyway.
    similarity = checks[("latency-similarity", "all")]
    assert similarity["status"] == "skip"
    assert "stopped early" in similarity["reason"]


def test_overall_deadline_ends_a_slow_run(tmp_path: Path, fake_deployment: FakeDeployment) -> None:
    for inst in fake_deployment.instances:
        inst.delay = 0.2  # healthy but slow: 10,000 requests at 4 at a time is 500 s
    result, data, elapsed = run(
        tmp_path, fake_deployment, "-n", "10000", "-c", "4", "--deadline", "4"
    )
    assert result.exit_code == 1
    assert elapsed < 15
    assert data["thresholds"]["deadlineSeconds"] == 4.0
    assert data["traffic"]["stoppedEarly"] == "deadline reached"
    assert (
        "burst stopped early (deadline reached)" in by_check(data)[("error-rate", "edge")]["reason"]
    )


def test_default_deadline_grows_with_the_burst() -> None:
    small = VerifyOptions().deadline(2)
    big = VerifyOptions(requests=5000).deadline(2)
    assert small == 72.5  # documented in docs/verify.md
    assert small < big < 300
    assert VerifyOptions(wait_seconds=600).deadline(2) == 600 + small
    assert VerifyOptions(deadline_seconds=30, wait_seconds=600).deadline(2) == 30


def test_stop_rule_stops_a_failing_burst_not_a_glitch() -> None:
    rule = stop_rule(VerifyOptions(concurrency=16), planned=232)
    # Too few answers yet, whatever they were.
    assert rule(15, 15, [False] * 15) is None
    # Failing now: over the allowance (0.1% of 232) and half of the last 16 failed.
    reason = rule(16, 16, [False] * 16)
    assert reason == "after 16 of 232 requests: 16 failed, 16 of the last 16, over the 0.1% allowed"
    # A glitch that passed: 3 failures long ago, the last 16 fine. The error-rate check fails
    # at the end with exact counts; the burst goes on.
    assert rule(100, 3, [False] * 3 + [True] * 97) is None
    # A higher threshold is not exceeded by the same failures.
    lenient = stop_rule(VerifyOptions(concurrency=16, max_error_rate_percent=50), planned=232)
    assert lenient(20, 16, [False] * 16 + [True] * 4) is None


def test_median_bounds_are_the_order_statistics() -> None:
    # n = 40: P(Binomial(40, 1/2) <= 13) = 0.019 <= 2.5% < P(<= 14) = 0.040, so k = 14.
    assert median_bounds([float(v) for v in range(40, 0, -1)]) == (14.0, 27.0)
    # Too few values to bound anything at 95%: the whole range.
    assert median_bounds([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_identical_instances_pass_similarity(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    result, data, _ = run(tmp_path, fake_deployment, "-n", "20")
    assert result.exit_code == 0, result.output
    similarity = by_check(data)[("latency-similarity", "all")]
    assert similarity["status"] == "pass"
    assert similarity["values"]["samples"] == {"api-1": 40, "api-2": 40}


def test_client_timeout_outlasts_the_stacks_edge_retry_window(
    tmp_path: Path, fake_deployment: FakeDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import koinonia_infra.deploy.outputs
    from koinonia_infra.descriptor import parse_descriptor

    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: koinonia\nruntime: python\n")
    (project / "Pulumi.staging.yaml").write_text(
        "config:\n  koinonia:ownerId: tea-koinoniatest000000000\n"
        "  koinonia:edge:\n    retryWindowSeconds: 12\n"
    )
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(project))
    monkeypatch.setattr(
        koinonia_infra.deploy.outputs,
        "read_descriptor",
        lambda stack, **_: parse_descriptor(fake_deployment.descriptor(), source=stack),
    )
    result = runner.invoke(app, ["verify", "--stack", "staging", "-n", "4", "-f", "json"])
    assert json.loads(result.stdout)["thresholds"]["timeoutSeconds"] == 17.0
    flagged = runner.invoke(
        app, ["verify", "--stack", "staging", "-n", "4", "-f", "json", "--timeout", "3"]
    )
    assert json.loads(flagged.stdout)["thresholds"]["timeoutSeconds"] == 3.0
