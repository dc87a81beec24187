"""Process liveness of the sandbox's records (psutil): a recycled PID, a zombie and a process
that is gone are never taken for the process the sandbox started."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from koinonia_infra.sandbox.state import ProcessRecord, SandboxState, is_alive, record_for


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_running_process_is_alive_and_recorded_with_its_creation_time(
    child: subprocess.Popen[bytes],
) -> None:
    record = record_for("api-1", child.pid)
    assert record.create_time == psutil.Process(child.pid).create_time()
    assert is_alive(record)


def test_a_recycled_pid_is_not_the_recorded_process(child: subprocess.Popen[bytes]) -> None:
    # Same PID, another creation time: what a PID reused by an unrelated process looks like.
    record = record_for("api-1", child.pid)
    assert record.create_time is not None
    recycled = record.model_copy(update={"create_time": record.create_time - 10.0})
    assert not is_alive(recycled)


def test_a_process_that_exited_is_not_alive(child: subprocess.Popen[bytes]) -> None:
    record = record_for("api-1", child.pid)
    child.kill()
    child.wait()
    assert not is_alive(record)


def test_a_zombie_is_not_alive() -> None:
    # The child exits at once; its parent (this test) does not reap it until after the check.
    # is_alive reaps only its own children, so a sleeping intermediate parent keeps it a zombie.
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys, time\n"
         "pid = os.fork()\n"
         "if pid == 0:\n    os._exit(0)\n"
         "print(pid, flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        zombie = psutil.Process(pid)
        for _ in range(200):
            if zombie.status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.01)
        assert zombie.status() == psutil.STATUS_ZOMBIE
        assert not is_alive(ProcessRecord(role="redis", pid=pid, pgid=pid))
    finally:
        parent.kill()
        parent.wait()


def test_a_record_of_an_older_sandbox_is_trusted_by_pid(child: subprocess.Popen[bytes]) -> None:
    # state.json written before creation times were psutil's: `startTime` is ignored.
    raw = {"role": "api-1", "pid": child.pid, "pgid": child.pid, "startTime": 12345}
    record = ProcessRecord.model_validate(raw)
    assert record.create_time is None
    assert is_alive(record)
    state = SandboxState.model_validate({"supervisor": raw})
    assert json.loads(state.model_dump_json(by_alias=True))["supervisor"]["createTime"] is None
