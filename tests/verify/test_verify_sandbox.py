"""`verify` against the real sandbox (PostgreSQL, Redis, reference instances, Caddy edge and the
control plane). Marked integration: they fail, not skip, under CI=true without the binaries."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from koinonia_infra.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def verify(sandbox: Any, *args: str) -> Any:
    return runner.invoke(
        app, ["verify", "--target", "sandbox", "--state-dir", str(sandbox.state_dir), *args]
    )


def checks_of(result: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["id"], c["target"]): c for c in json.loads(result.stdout)["checks"]}


def test_healthy_sandbox_passes_everything(sandbox: Any, tmp_path: Path) -> None:
    report = tmp_path / "signoff.md"
    t0 = time.monotonic()
    # p50s on a shared 2-core box are the scheduler's, not the instances' (observed up to 5x
    # between two identical instances under load): the ratio's own logic is tested against
    # servers with set delays in test_verify_fake.py; here only a gross difference fails.
    result = verify(
        sandbox, "--requests", "1000", "-f", "json", "--report", str(report), "--p50-ratio", "10"
    )
    elapsed = time.monotonic() - t0
    failed = [f"{c['id']} {c['target']}: {c['reason']}" for c in json.loads(result.stdout)["checks"]
              if c["status"] != "pass"]  # fmt: skip
    assert result.exit_code == 0, failed
    data = json.loads(result.stdout)
    assert data["passed"] is True
    assert data["summary"]["failed"] == 0
    assert data["summary"]["skipped"] == 0  # the control plane answers parity and deploy status
    checks = checks_of(result)
    shares = checks[("distribution", "edge")]["values"]["sharesPercent"]
    assert set(shares) == {"api-1", "api-2"}
    assert all(40 <= v <= 60 for v in shares.values())
    assert checks[("config-parity", "all")]["status"] == "pass"
    assert checks[("deploy-status", "api-1")]["values"]["deployStatus"] == "live"
    # Both instances build the same branch, as on Render: one commit.
    commits = {checks[("deploy-status", t)]["values"]["commit"] for t in ("api-1", "api-2")}
    assert len(commits) == 1
    assert None not in commits
    p95 = checks[("latency", "all")]["values"]["p95Ms"]
    assert isinstance(p95, float)
    markdown = report.read_text()
    assert "**PASSED**" in markdown
    assert f"api-1 {shares['api-1']:.1f}%" in markdown
    assert f"p95 {p95} ms" in markdown
    # Generous on a shared 2-core box; benchmarks/bench_probe.py measures the 3 s target.
    assert elapsed < 15


def test_redis_stopped_degrades_every_instance(sandbox: Any) -> None:
    sandbox.stop("redis")
    result = verify(sandbox, "--requests", "50")
    assert result.exit_code == 1
    for target in ("api-1", "api-2"):
        line = next(
            ln for ln in result.stdout.splitlines() if ln.startswith(f"✗ instance-health {target}:")
        )
        assert "redis down" in line
        assert "database down" not in line
    assert "verification failed" in result.stderr


def test_killed_instance_edge_keeps_serving(sandbox: Any) -> None:
    sandbox.kill("api-1")
    result = verify(sandbox, "--requests", "100", "-f", "json")
    assert result.exit_code == 1
    checks = checks_of(result)
    assert checks[("instance-health", "api-1")]["status"] == "fail"
    assert "connection refused" in checks[("instance-health", "api-1")]["reason"]
    assert checks[("instance-health", "api-2")]["status"] == "pass"
    assert checks[("edge-health", "edge")]["status"] == "pass"
    assert checks[("error-rate", "edge")]["status"] == "pass"
    reason = checks[("distribution", "edge")]["reason"]
    assert reason.startswith("only api-2 answered")
    assert "api-1 got 0" in reason


def test_wait_until_an_instance_recovers(sandbox: Any) -> None:
    # SIGSTOP freezes api-1 (its /health times out); SIGCONT after a few seconds revives it.
    # A probe timeout shorter than the freeze makes the first attempt fail for sure.
    pid = sandbox.pid("api-1")
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(3.0, os.kill, (pid, signal.SIGCONT))
    timer.start()
    try:
        result = verify(sandbox, "--requests", "50", "--wait", "30", "--timeout", "1", "-f", "json")
    finally:
        timer.cancel()
        os.kill(pid, signal.SIGCONT)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["attempts"] >= 2


def test_wait_reports_last_observation_at_deadline(sandbox: Any) -> None:
    sandbox.kill("api-2")
    t0 = time.monotonic()
    result = verify(sandbox, "--requests", "50", "--wait", "3", "-f", "json")
    elapsed = time.monotonic() - t0
    assert result.exit_code == 1
    assert 3 <= elapsed < 20
    data = json.loads(result.stdout)
    assert data["attempts"] >= 2
    health = checks_of(result)[("instance-health", "api-2")]
    assert "connection refused" in health["reason"]


def _reasons(data: dict[str, Any]) -> list[str]:
    return [c["reason"] for c in data["checks"] if c["reason"]]


@pytest.mark.parametrize(
    ("role", "sig", "cause"),
    [
        ("redis", signal.SIGTERM, "redis down"),
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM (smart) waits for the instances' pools.
        ("postgres", signal.SIGINT, "database down"),
    ],
)
def test_datastore_down_is_bounded_and_named_on_every_instance(
    sandbox: Any, role: str, sig: signal.Signals, cause: str
) -> None:
    # It ran ~26 minutes: each of the 5,000 requests waited out the edge's retry window.
    sandbox.stop(role, sig)
    t0 = time.monotonic()
    result = verify(sandbox, "--requests", "5000", "-f", "json")
    elapsed = time.monotonic() - t0
    assert result.exit_code == 1
    assert elapsed < 60  # loose on a shared machine: measured ~15 s
    data = json.loads(result.stdout)
    checks = checks_of(result)
    for target in ("api-1", "api-2"):
        assert cause in checks[("instance-health", target)]["reason"]
    errors = checks[("error-rate", "edge")]
    assert errors["status"] == "fail"
    assert data["traffic"]["stoppedEarly"] is not None
    assert f"instances: api-1 {cause}; api-2 {cause}" in errors["reason"]
    # What happened, in words: the edge giving up, or an instance's 503, never a client timeout.
    assert all(
        r.startswith(("edge answered 503 (no healthy upstream)", "HTTP 503 from api-"))
        for r in errors["values"]["reasons"]
    ), errors["values"]["reasons"]
    assert not any("timed out" in r for r in _reasons(data))


def test_redis_killed_during_the_burst_stops_it_and_names_the_cause(sandbox: Any) -> None:
    # A burst that would take minutes on a healthy sandbox; Redis dies a few seconds in.
    killer = threading.Timer(3.0, sandbox.stop, ("redis",))
    killer.start()
    t0 = time.monotonic()
    try:
        result = verify(sandbox, "--requests", "200000", "-c", "8", "-f", "json")
    finally:
        killer.join()
    elapsed = time.monotonic() - t0
    assert result.exit_code == 1
    assert elapsed < 60
    data = json.loads(result.stdout)
    assert data["traffic"]["stoppedEarly"] is not None
    assert data["traffic"]["requests"] < 200_000
    checks = checks_of(result)
    # Read again after the burst: the reads before it found Redis up.
    for target in ("api-1", "api-2"):
        assert "redis down" in checks[("instance-health", target)]["reason"]


def test_repeated_healthy_runs_pass_latency_similarity(sandbox: Any) -> None:
    # Default runs back to back; the burst-based check failed 2 of 10 of these.
    seen = []
    for _ in range(10):
        result = verify(sandbox, "-f", "json")
        similarity = checks_of(result)[("latency-similarity", "all")]
        seen.append((similarity["status"], similarity["measured"]))
    assert all(status == "pass" for status, _ in seen), seen


def test_a_really_slower_instance_fails_latency_similarity(sandbox: Any) -> None:
    import httpx

    # api-2 answers 50 ms later (its env through the control plane, then a deploy, as on Render).
    inst = sandbox.descriptor.instance(2)
    with httpx.Client(base_url=sandbox.api_url, headers=sandbox.auth_headers) as api:
        put = api.put(
            f"/services/{inst.service_id}/env-vars/KOINONIA_SANDBOX_DELAY_MS", json={"value": "50"}
        )
        assert put.status_code == 200
        deploy = api.post(f"/services/{inst.service_id}/deploys", json={}).json()
        deadline = time.monotonic() + 60
        status = deploy["status"]
        while status != "live":
            assert time.monotonic() < deadline, f"deploy still {status}"
            time.sleep(0.2)
            status = api.get(f"/services/{inst.service_id}/deploys/{deploy['id']}").json()["status"]
    result = verify(sandbox, "-f", "json")
    assert result.exit_code == 1
    similarity = checks_of(result)[("latency-similarity", "all")]
    assert similarity["status"] == "fail", similarity
    assert similarity["reason"].startswith("api-2 p50 is ")
    assert similarity["values"]["p50Ms"]["api-2"] >= 50
    assert similarity["values"]["ratioLowerBound"] > 2
