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
