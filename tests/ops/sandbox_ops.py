"""Running day-2 commands against the real sandbox as separate processes, the way two operators
(or an operator and a dropped SSH session) do: helpers for the guard, signal and resume tests."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

# The test process may inherit SIGINT ignored (started in the background of a script); a terminal
# gives Ctrl-C back, and so does this entry point.
CLI = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from koinonia_infra.cli import main; main()"
)


def target(sandbox: Any) -> list[str]:
    return ["--target", "sandbox", "--state-dir", str(sandbox.state_dir)]


def api_get(sandbox: Any, path: str) -> Any:
    response = httpx.get(sandbox.api_url + path, headers=sandbox.auth_headers, timeout=5)
    response.raise_for_status()
    return response.json()


def api_post(sandbox: Any, path: str) -> None:
    response = httpx.post(sandbox.api_url + path, headers=sandbox.auth_headers, timeout=5)
    response.raise_for_status()


def suspended(sandbox: Any, number: int) -> bool:
    sid = sandbox.descriptor.instance(number).service_id
    return bool(api_get(sandbox, f"/services/{sid}")["suspended"] == "suspended")


def healthy(sandbox: Any, number: int) -> bool:
    try:
        url = sandbox.descriptor.instance(number).url + "/health"
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(sandbox: Any, number: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(sandbox, number):
        assert time.monotonic() < deadline, f"api-{number} never became healthy"
        time.sleep(0.2)


def cli_env(lock_home: Path | None = None) -> dict[str, str]:
    """The environment of a CLI process; `lock_home` is its XDG_STATE_HOME, where the deployment
    lock lives: two different ones stand for two machines."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    if lock_home is not None:
        env["XDG_STATE_HOME"] = str(lock_home)
    return env


class Drill:
    """`drill failover` in its own process, read line by line from stderr."""

    def __init__(
        self, sandbox: Any, instance: int, *, duration: float = 60, lock_home: Path | None = None
    ) -> None:
        cmd = [
            sys.executable,
            "-c",
            CLI,
            "drill",
            "failover",
            *target(sandbox),
            "--instance",
            str(instance),
            "--duration",
            str(duration),
            "--yes",
            "--format",
            "json",
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(lock_home),
            text=True,
        )
        self.seen = ""

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"never saw {text!r}: {self.seen}"
            ready, _, _ = select.select([self.proc.stderr], [], [], 1.0)
            if ready:
                line = self.proc.stderr.readline()
                assert line or self.proc.poll() is None, f"the drill ended early: {self.seen}"
                self.seen += line

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        stdout, stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, stdout, self.seen + stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
