"""`status`, `drill failover` and `rollout` against a real sandbox (PostgreSQL, Redis, instances,
Caddy edge, control plane): the acceptance criteria of the day-2 operations."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops_fakes import REQUIRED_KEYS
from typer.testing import CliRunner

from koinonia_infra.cli import app

pytestmark = pytest.mark.integration


def target(sandbox: Any) -> list[str]:
    return ["--target", "sandbox", "--state-dir", str(sandbox.state_dir)]


def api_get(sandbox: Any, path: str) -> Any:
    response = httpx.get(sandbox.api_url + path, headers=sandbox.auth_headers, timeout=5)
    response.raise_for_status()
    return response.json()


def latest_deploy(sandbox: Any, service_id: str) -> dict[str, Any]:
    page = api_get(sandbox, f"/services/{service_id}/deploys?limit=1")
    return dict(page[0]["deploy"])


# The drill and the rollout run under both sandbox profiles: the fast default, and `render`,
# Render's sequence with scaled delays (asynchronous suspend, resume as a deploy, the old
# instance kept after the switch; koinonia_infra/sandbox/timing.py).
PROFILES = pytest.mark.parametrize("profile", ["fast", "render"])


def started(request: pytest.FixtureRequest, profile: str) -> Any:
    return request.getfixturevalue("sandbox" if profile == "fast" else "render_timed_sandbox")


def invoke(args: list[str]) -> Any:
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_status_shows_both_instances_live_and_the_edge(sandbox: Any) -> None:
    result = invoke(["status", *target(sandbox), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {s["role"]: s for s in data["services"]}
    assert list(rows) == ["api-1", "api-2", "edge"]
    for role in ("api-1", "api-2", "edge"):
        assert rows[role]["deployStatus"] == "live"
        assert rows[role]["suspended"] is False
        assert rows[role]["healthy"] is True
        assert rows[role]["healthLatencyMs"] is not None
    assert rows["api-2"]["name"] == "koinonia-sms-backend-2"
    assert sandbox.token not in result.output

    table = invoke(["status", *target(sandbox)])
    assert table.exit_code == 0
    for role in ("api-1", "api-2", "edge"):
        assert role in table.stdout
    assert table.stdout.count("live") == 3


@PROFILES
def test_drill_failover_on_a_healthy_sandbox(
    request: pytest.FixtureRequest, profile: str, tmp_path: Path
) -> None:
    sandbox = started(request, profile)
    report_file = tmp_path / "drill.md"
    sid = sandbox.descriptor.instance(1).service_id
    # Suspended longer than the edge's fail_duration (3 s by default), so the rejoin measures the
    # instance's recovery rather than the edge's memory of the failure.
    result = invoke(
        [
            "drill",
            "failover",
            *target(sandbox),
            "--duration",
            "10",
            "--yes",
            "--format",
            "json",
            "--report",
            str(report_file),
        ]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data.keys() >= REQUIRED_KEYS
    assert data["failedRequests"] == 0, data["errors"]
    assert data["totalRequests"] > 1000
    assert data["resumed"] is True
    assert data["suspended"] is True
    assert data["secondsToRejoin"] is not None
    # The deadlines were the sandbox profile's, and the measured times are reported.
    timing = data["timing"]
    assert timing["target"] == f"sandbox ({profile})"
    assert data["secondsToSuspended"] is not None
    assert data["secondsToSuspended"] <= timing["suspendTimeoutSeconds"]
    assert data["secondsToHealthy"] is not None
    if profile == "render":
        # Resume is a deploy there: listed, followed to live, before the instance serves.
        assert data["resumeDeploy"] is not None
        assert data["secondsToResumeLive"] is not None
        # The edge may reach the booted instance before the deploy reads `live` (it dials the
        # instance, not Render's router): only the order resume -> traffic again is certain.
        assert data["secondsToRejoin"] > 0
        deploy = api_get(sandbox, f"/services/{sid}/deploys/{data['resumeDeploy']}")
        assert deploy["trigger"] == "service_resumed"
        assert deploy["status"] == "live"
    assert data["servedByWhileSuspended"].get("api-1", 0) == 0
    assert data["servedByWhileSuspended"]["api-2"] > 0
    events = [e["event"] for e in data["timeline"]]
    assert "suspend api-1 requested" in events
    assert "API reports api-1 suspended" in events
    assert "resume api-1 requested" in events
    assert api_get(sandbox, f"/services/{sid}")["suspended"] == "not_suspended"
    text = report_file.read_text()
    assert "- [x] api-1 resumed: resumed" in text
    assert "- [x] no failed requests through the edge: 0 of" in text
    assert sandbox.token not in result.output + text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_drill_resumes_the_instance(sandbox: Any, sig: signal.Signals) -> None:
    sid = sandbox.descriptor.instance(1).service_id
    # A test run started in the background of a script inherits SIGINT ignored, and so would the
    # child: give it Ctrl-C back, as a terminal would, since that is what this test sends.
    cli = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from koinonia_infra.cli import main; main()"
    )
    cmd = [
        sys.executable,
        "-c",
        cli,
        "drill",
        "failover",
        *target(sandbox),
        "--duration",
        "60",
        "--yes",
        "--format",
        "json",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    seen = ""
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while "no longer receives traffic" not in seen:
            assert time.monotonic() < deadline, f"the drill never suspended api-1: {seen}"
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                line = proc.stderr.readline()
                assert line or proc.poll() is None, f"the drill ended early: {seen}"
                seen += line
        assert api_get(sandbox, f"/services/{sid}")["suspended"] == "suspended"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, seen + stderr
    data = json.loads(stdout)
    assert data["outcome"] == "interrupted"
    assert data["resumed"] is True
    assert "api-1 resumed" in stderr
    assert api_get(sandbox, f"/services/{sid}")["suspended"] == "not_suspended"
    # Resumed for real: the instance answers its /health again.
    url = sandbox.descriptor.instance(1).url + "/health"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "api-1 never became healthy after the interrupt"
        time.sleep(0.2)


@PROFILES
def test_rollout_redeploys_every_instance_without_failed_requests(
    request: pytest.FixtureRequest, profile: str
) -> None:
    sandbox = started(request, profile)
    before = {
        i.number: latest_deploy(sandbox, i.service_id)["id"] for i in sandbox.descriptor.instances
    }
    result = invoke(["rollout", *target(sandbox), "--order", "2,1", "--format", "json", "--yes"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["failedRequests"] == 0, data["errors"]
    assert {"totalRequests", "achievedRate", "maxLatencyMs"} <= data.keys()
    assert [(s["instance"], s["outcome"]) for s in data["steps"]] == [(2, "done"), (1, "done")]
    for inst in sandbox.descriptor.instances:
        now = latest_deploy(sandbox, inst.service_id)
        assert now["status"] == "live"
        assert now["id"] != before[inst.number]
    # Both instances serve through the edge again, with the API's view agreeing.
    assert set(data["servedBy"]) == {"api-1", "api-2"}
    # Each instance was held through the profile's overlap and shutdown delay before the next.
    assert data["timing"]["target"] == f"sandbox ({profile})"
    handover = data["timing"]["handoverSeconds"]
    for step in data["steps"]:
        assert step["secondsHandover"] is not None
        assert step["secondsHandover"] >= handover


@PROFILES
def test_a_deploy_that_never_gets_healthy_stops_the_rollout(
    request: pytest.FixtureRequest, profile: str
) -> None:
    sandbox = started(request, profile)
    api_2 = sandbox.descriptor.instance(2).service_id
    api_1 = sandbox.descriptor.instance(1).service_id
    before_1 = latest_deploy(sandbox, api_1)["id"]
    response = httpx.post(
        f"{sandbox.api_url}/_sandbox/services/{api_2}/fail-next-deploy",
        headers=sandbox.auth_headers,
        timeout=5,
    )
    response.raise_for_status()
    result = invoke(["rollout", *target(sandbox), "--order", "2,1", "--format", "json", "--yes"])
    assert result.exit_code == 1, result.output
    assert "api-2 (koinonia-sms-backend-2)" in result.stderr
    assert "update_failed" in result.stderr
    data = json.loads(result.stdout)
    assert [(s["instance"], s["outcome"]) for s in data["steps"]] == [
        (2, "failed"),
        (1, "untouched"),
    ]
    assert data["failedRequests"] == 0, data["errors"]
    # Instance 1 untouched and serving; instance 2 still on its old version (Render's behaviour).
    assert latest_deploy(sandbox, api_1)["id"] == before_1
    assert latest_deploy(sandbox, api_2)["status"] == "update_failed"
    assert httpx.get(sandbox.descriptor.instance(1).url + "/health", timeout=5).status_code == 200
    served = [httpx.get(sandbox.edge_url + "/health", timeout=5) for _ in range(10)]
    assert all(r.status_code == 200 for r in served)


def test_status_checks_the_private_network_against_the_running_edge(sandbox: Any) -> None:
    result = invoke(["status", *target(sandbox), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # Read back from the edge's environment (KOINONIA_CADDYFILE), as it would be on Render; the
    # sandbox's edge dials each instance's loopback address, nothing resolving a slug here.
    loopback = [i.url.removeprefix("http://") for i in sandbox.descriptor.instances]
    assert data["privateNetwork"]["edgeUpstreams"] == loopback
    assert data["privateNetwork"]["confirmed"] is True
    assert data["warnings"] == []
    for row, inst in zip(data["services"][:2], sandbox.descriptor.instances, strict=True):
        # Render-shaped slugs (<name>-<4 chars>), which the private addresses are built from.
        assert row["slug"] != inst.name
        assert row["privateAddress"] == f"{row['slug']}:{inst.private_address.rsplit(':')[1]}"
        assert row["slugIsPrivateHost"] is True
        assert row["inEdgeUpstreams"] is True
        assert row["servedViaEdge"] is True
    assert "warning" not in result.stderr.lower()
    assert "private network confirmed: the edge reaches api-1 at " in result.stderr
