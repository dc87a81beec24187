"""`sandbox up | status | down` as a user runs them: a real CLI process, a real daemon."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from koinonia_infra.descriptor import load_descriptor
from koinonia_infra.sandbox.state import ProcessRecord, is_alive, read_state

CLI = [sys.executable, "-c", "from koinonia_infra.cli import main; main()"]


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=180, env=env, check=False
    )


def state_postgres_dir(state_dir: Path) -> Path:
    state = read_state(state_dir)
    assert state is not None
    assert state.postgres_dir is not None
    return Path(state.postgres_dir)


def _processes_mentioning(text: str) -> list[str]:
    """Live processes (not zombies) whose command line names `text`, through psutil."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if text in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found


@pytest.fixture
def sandbox_dir(sandbox_state_dir: Path) -> Path:
    return sandbox_state_dir


@pytest.mark.integration
def test_up_status_down_leaves_no_process_behind(sandbox_dir: Path) -> None:
    up = cli("sandbox", "up", "--state-dir", sandbox_dir, "--format", "json")
    assert up.returncode == 0, up.stderr
    report = json.loads(up.stdout)
    records = [
        ProcessRecord(role=p["role"], pid=p["pid"], pgid=p["pgid"]) for p in report["processes"]
    ]
    assert {r.role for r in records} == {
        "supervisor",
        "postgres",
        "redis",
        "api-1",
        "api-2",
        "edge",
    }
    assert "sandbox up in" in up.stderr
    assert "edge (caddy) healthy" in up.stderr

    descriptor_path = sandbox_dir / "descriptor.json"
    assert stat.S_IMODE(descriptor_path.stat().st_mode) == 0o600
    descriptor = load_descriptor(descriptor_path)
    assert descriptor.stack == "sandbox"
    assert [i.name for i in descriptor.instances] == [
        "koinonia-sms-backend",
        "koinonia-sms-backend-2",
    ]
    token = descriptor.render_api_key
    assert token is not None
    assert token.get_secret_value() not in up.stdout + up.stderr
    # The CLI has returned; the daemon keeps everything serving.
    health = httpx.get(descriptor.edge_url + "/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["instance"] in ("api-1", "api-2")

    again = cli("sandbox", "up", "--state-dir", sandbox_dir)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    state = read_state(sandbox_dir)
    assert state is not None
    assert state.supervisor.pid == report["processes"][0]["pid"]

    status = cli("sandbox", "status", "--state-dir", sandbox_dir, "--format", "json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["running"] is True
    assert all(p["alive"] for p in shown["processes"])
    assert [h["ok"] for h in shown["health"]] == [True, True, True]
    assert token.get_secret_value() not in status.stdout

    down = cli("sandbox", "down", "--state-dir", sandbox_dir)
    assert down.returncode == 0, down.stderr
    assert "sandbox stopped" in down.stderr
    alive = [r for r in records if is_alive(r)]
    assert alive == []
    assert _processes_mentioning(str(sandbox_dir)) == []

    # The descriptor is derived state: gone with the processes, so `--target sandbox` says so
    # instead of trying dead ports.
    assert not descriptor_path.exists()
    stale = cli("verify", "--target", "sandbox", "--state-dir", sandbox_dir)
    assert stale.returncode == 2, stale.stderr
    assert "start one with `koinonia-infra sandbox up`" in stale.stderr
    assert "Traceback" not in stale.stderr
    stopped = cli("sandbox", "status", "--state-dir", sandbox_dir, "--format", "json")
    assert json.loads(stopped.stdout)["running"] is False

    twice = cli("sandbox", "down", "--state-dir", sandbox_dir)
    assert twice.returncode == 0
    assert "no running sandbox" in twice.stderr
    # Nothing the user made is removed unless asked: the data and logs stay.
    assert (sandbox_dir / "logs").is_dir()
    assert (sandbox_dir / "postgres").is_dir() or state_postgres_dir(sandbox_dir).is_dir()

    purge = cli("sandbox", "down", "--state-dir", sandbox_dir, "--purge")
    assert purge.returncode == 0
    assert not sandbox_dir.exists()


@pytest.mark.integration
def test_down_stops_what_a_killed_supervisor_left(sandbox_dir: Path) -> None:
    assert cli("sandbox", "up", "--state-dir", sandbox_dir, "--instances", "1").returncode == 0
    state = read_state(sandbox_dir)
    assert state is not None
    os.kill(state.supervisor.pid, signal.SIGKILL)
    time.sleep(0.2)
    survivors = [r for r in state.processes if is_alive(r)]
    assert {r.role for r in survivors} == {"postgres", "redis", "api-1", "edge"}
    # A SIGKILLed supervisor could not remove its descriptor: `down` must.
    assert (sandbox_dir / "descriptor.json").exists()

    down = cli("sandbox", "down", "--state-dir", sandbox_dir)
    assert down.returncode == 0, down.stderr
    assert [r for r in state.all_records() if is_alive(r)] == []
    assert not (sandbox_dir / "descriptor.json").exists()
    assert _processes_mentioning(str(sandbox_dir)) == []


def test_missing_binary_is_one_line_with_the_install_hint(tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = cli(
        "sandbox", "up", "--state-dir", tmp_path / "s", env={**os.environ, "PATH": str(empty)}
    )
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "redis-server not found" in lines[0]
    assert "apt-get install redis-server" in lines[0]
    assert "brew install caddy" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_bad_instance_count_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("sandbox", "up", "--state-dir", tmp_path / "s", "--instances", "0")
    assert result.returncode == 2
    assert "--instances 0" in result.stderr


@pytest.mark.integration
def test_interrupted_up_stops_what_it_started(sandbox_dir: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "sandbox", "up", "--state-dir", str(sandbox_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background inherits SIGINT ignored; a user's terminal doesn't.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    # Interrupt mid-way: once the supervisor has launched the instances.
    deadline = time.monotonic() + 30
    seen: dict[int, ProcessRecord] = {}
    while "api-1" not in {r.role for r in seen.values()}:
        assert time.monotonic() < deadline, f"supervisor never recorded api-1 (saw {seen})"
        assert proc.poll() is None, proc.communicate()
        state = read_state(sandbox_dir)
        if state is not None:
            seen.update({r.pid: r for r in state.all_records()})
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert [r for r in seen.values() if is_alive(r)] == []
    assert _processes_mentioning(str(sandbox_dir)) == []


@pytest.mark.integration
def test_up_records_the_timing_profile_in_the_descriptor(sandbox_dir: Path) -> None:
    bad = cli("sandbox", "up", "--state-dir", sandbox_dir, "--timing", "slow")
    assert bad.returncode == 2, bad.stderr
    assert "--timing slow" in bad.stderr + bad.stdout
    up = cli("sandbox", "up", "--state-dir", sandbox_dir, "--timing", "render", "--format", "json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["descriptor"]["sandboxTiming"] == "render"
    assert load_descriptor(sandbox_dir / "descriptor.json").sandbox_timing == "render"
    again = cli("sandbox", "up", "--state-dir", sandbox_dir)
    assert again.returncode == 0, again.stderr
    assert "timing: render" in again.stdout + again.stderr


@pytest.mark.integration
def test_render_timed_sandbox_fixture_runs_the_render_profile(render_timed_sandbox: Any) -> None:
    assert render_timed_sandbox.descriptor.sandbox_timing == "render"
    resp = httpx.get(render_timed_sandbox.edge_url + "/health", timeout=5)
    assert resp.status_code == 200
