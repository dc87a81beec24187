"""Nothing the tool does may leave every instance out of service: two drills, a drill and a
rollout, on one machine (the deployment lock) or on two (the re-check before each suspend or
deploy, and the drill's watch while it holds its instance down). Against the real sandbox."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sandbox_ops import CLI, Drill, api_get, api_post, cli_env, suspended, target, wait_healthy
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.descriptor import parse_descriptor
from koinonia_infra.errors import StackLocked
from koinonia_infra.ops.guard import deployment_lock

ROOT = Path(__file__).resolve().parents[2]


def invoke(args: list[str], lock_home: Path) -> Any:
    # XDG_STATE_HOME is where the deployment lock lives: the same one is the same machine.
    result = CliRunner().invoke(app, args, env={"XDG_STATE_HOME": str(lock_home)})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def resume_command(sandbox: Any, number: int) -> str:
    return f"`koinonia-infra resume {number} --target sandbox --state-dir {sandbox.state_dir}`"


# ---- the lock ------------------------------------------------------------------------------------

_DESCRIPTOR = parse_descriptor(
    {
        "edgeUrl": "https://edge.example.test",
        "instances": [
            {
                "number": 1,
                "name": "a",
                "serviceId": "srv-a",
                "url": "https://a.example.test",
                "privateAddress": "a:8080",
            }
        ],
    },
    source="test",
)

_HOLD = """
import sys, time
from pathlib import Path
from koinonia_infra.descriptor import parse_descriptor
from koinonia_infra.ops.guard import deployment_lock
d = parse_descriptor({"edgeUrl": "https://edge.example.test", "instances": [{"number": 1,
    "name": "a", "serviceId": "srv-a", "url": "https://a.example.test",
    "privateAddress": "a:8080"}]}, source="test")
with deployment_lock(d, "drill failover --instance 1", directory=Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(StackLocked) as refused,
            deployment_lock(_DESCRIPTOR, "rollout", directory=tmp_path),
        ):
            pass
        message = refused.value.message
        assert message.startswith("`drill failover --instance 1` (pid ")
        assert f"pid {holder.pid} on " in message
        assert "wait for it to finish before running rollout" in message
        # SIGKILL: no cleanup ran, and still the lock is free (no stale lock to release by hand).
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with deployment_lock(_DESCRIPTOR, "rollout", directory=tmp_path):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_workflows_that_change_production_share_one_concurrency_group() -> None:
    # Across machines the CI side is serialised by GitHub Actions' concurrency group.
    groups: dict[str, str] = {}
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        commands = (" up ", "destroy-instance", "drill failover", "rollout", "resume ")
        if not any(c in text for c in commands):
            continue
        data = yaml.safe_load(text)
        for name, job in data["jobs"].items():
            steps = " ".join(str(s.get("run", "")) for s in job.get("steps", []))
            if any(c in steps for c in commands):
                concurrency = job.get("concurrency") or data.get("concurrency") or {}
                groups[f"{path.name}:{name}"] = concurrency.get("group", "")
    assert groups, "no workflow changes production?"
    assert set(groups.values()) == {"koinonia-prod"}, groups
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        assert "cancel-in-progress: true" not in path.read_text() or path.name in (
            "ci.yml",
            "preview.yml",
        )


# ---- against the sandbox -------------------------------------------------------------------------


@pytest.mark.integration
def test_a_second_operation_on_this_machine_is_refused_while_a_drill_runs(
    sandbox: Any, tmp_path: Path
) -> None:
    home = tmp_path / "machine-a"
    drill = Drill(sandbox, 1, duration=60, lock_home=home)
    try:
        drill.wait_for("no longer receives traffic")
        second = invoke(["drill", "failover", *target(sandbox), "--instance", "2", "--yes"], home)
        assert second.exit_code == 4, second.output
        assert "`drill failover --instance 1` (pid " in second.stderr
        rollout = invoke(["rollout", *target(sandbox), "--yes"], home)
        assert rollout.exit_code == 4, rollout.output
        assert not suspended(sandbox, 2)
        drill.proc.send_signal(signal.SIGINT)
        code, _, stderr = drill.finish()
    finally:
        drill.kill()
    assert code == 130, stderr
    assert not suspended(sandbox, 1)


@pytest.mark.integration
def test_another_machine_is_refused_and_the_drill_aborts_when_the_others_go_down(
    sandbox: Any, tmp_path: Path
) -> None:
    # Two lock homes: two machines, so only the re-check stands between them.
    drill = Drill(sandbox, 1, duration=120, lock_home=tmp_path / "machine-a")
    other = tmp_path / "machine-b"
    try:
        drill.wait_for("no longer receives traffic")
        hint = "api-1 (koinonia-sms-backend) is suspended: bring it back with " + resume_command(
            sandbox, 1
        )

        second = invoke(["drill", "failover", *target(sandbox), "--instance", "2", "--yes"], other)
        assert second.exit_code == 1, second.output
        assert "refusing to suspend api-2" in second.stderr
        assert hint in second.stderr
        assert not suspended(sandbox, 2)

        rollout = invoke(["rollout", *target(sandbox), "--yes", "--format", "json"], other)
        assert rollout.exit_code == 1, rollout.output
        assert "refusing to roll out" in rollout.stderr
        assert hint in rollout.stderr

        status = invoke(["status", *target(sandbox)], other)
        assert status.exit_code == 0
        assert hint in status.stderr

        # Both passed their re-check in the same instant: the other drill suspends api-2 now.
        api_post(sandbox, f"/services/{sandbox.descriptor.instance(2).service_id}/suspend")
        code, stdout, stderr = drill.finish(timeout=60)
    finally:
        drill.kill()
    assert code == 1, stderr
    data = json.loads(stdout)
    assert data["outcome"] == "failed"
    assert data["resumed"] is True
    assert data["error"].startswith("aborted: api-1 was brought back because another instance")
    assert "api-2 (koinonia-sms-backend-2) is suspended" in data["error"]
    assert not suspended(sandbox, 1)
    wait_healthy(sandbox, 1)


@pytest.mark.integration
def test_a_drill_is_refused_while_a_rollout_deploys_another_instance(
    sandbox: Any, tmp_path: Path
) -> None:
    api_2 = sandbox.descriptor.instance(2).service_id
    # Keep api-2's deploy in progress long enough to be seen: it waits for a health that fails.
    response = httpx.post(
        f"{sandbox.api_url}/_sandbox/services/{api_2}/fail-next-deploy",
        headers=sandbox.auth_headers,
        json={"healthTimeoutSeconds": 30},
        timeout=5,
    )
    response.raise_for_status()
    cmd = [sys.executable, "-c", CLI, "rollout", *target(sandbox), "--order", "2,1", "--yes"]
    rollout = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(tmp_path / "machine-a"),
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _deploying(sandbox, api_2):
            assert time.monotonic() < deadline, "the rollout never deployed api-2"
            assert rollout.poll() is None, "the rollout ended early"
            time.sleep(0.1)
        drill = invoke(
            ["drill", "failover", *target(sandbox), "--instance", "1", "--yes"],
            tmp_path / "machine-b",
        )
        assert drill.exit_code == 1, drill.output
        assert "refusing" in drill.stderr
        assert not suspended(sandbox, 1)
        rollout.send_signal(signal.SIGINT)
        rollout.communicate(timeout=60)
    finally:
        if rollout.poll() is None:
            rollout.kill()
            rollout.wait()
    assert not suspended(sandbox, 1)


def _deploying(sandbox: Any, service_id: str) -> bool:
    page = api_get(sandbox, f"/services/{service_id}/deploys?limit=1")
    return page[0]["deploy"]["status"] in ("build_in_progress", "update_in_progress")


@pytest.mark.integration
def test_rollout_asks_first_and_defaults_to_no(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deploys() -> list[str]:
        return [
            api_get(sandbox, f"/services/{i.service_id}/deploys?limit=1")[0]["deploy"]["id"]
            for i in sandbox.descriptor.instances
        ]

    before = deploys()
    # No terminal (CI): a usage error, not a silent yes.
    piped = invoke(["rollout", *target(sandbox)], tmp_path)
    assert piped.exit_code == 2, piped.output
    assert "rollout redeploys api-2, api-1: pass --yes to run it without a prompt" in piped.stderr
    # A terminal, and Enter: the default is No.
    from koinonia_infra.console import Output

    monkeypatch.setattr(Output, "interactive", property(lambda _self: True))
    asked = CliRunner().invoke(
        app,
        ["rollout", *target(sandbox)],
        input="\n",
        env={"XDG_STATE_HOME": str(tmp_path)},
    )
    assert asked.exit_code == 1, asked.output
    assert "Redeploy api-2, api-1 one at a time" in asked.output
    assert "[y/N]" in asked.output
    assert deploys() == before


@pytest.mark.integration
def test_two_drills_started_at_once_from_two_machines_never_both_run(
    sandbox: Any, tmp_path: Path
) -> None:
    # The race: one drill per instance, same instant, no shared lock. Whichever way the
    # race goes (one refused, or both suspend and both see it), neither holds its instance down
    # for its whole duration while the other is down, and both end resumed.
    drills = [Drill(sandbox, n, duration=30, lock_home=tmp_path / f"machine-{n}") for n in (1, 2)]
    try:
        results = [d.finish(timeout=120) for d in drills]
    finally:
        for d in drills:
            d.kill()
    codes = [code for code, _, _ in results]
    assert codes != [0, 0], results
    for code, stdout, stderr in results:
        if code == 0:
            continue
        assert code == 1, stderr
        assert "refusing to suspend" in stderr or "aborted: api-" in stderr, stderr
        if stdout.strip():  # a report: if it suspended, it brought its instance back
            report = json.loads(stdout)
            assert report["resumed"] is report["suspended"], report["timeline"]
    assert not suspended(sandbox, 1)
    assert not suspended(sandbox, 2)
