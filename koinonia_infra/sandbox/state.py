"""The sandbox's record of itself in its state dir: which processes it started (PID, process
group, creation time so a recycled PID is never mistaken for ours), ports and paths.

Layout of a state dir:

    state.json        this record (no secrets)
    descriptor.json   the deployment descriptor, with the control plane token (mode 0600); only
                      while the sandbox runs: derived state, removed when it stops
    secrets.json      generated database / cache passwords (mode 0600)
    supervisor.lock   held (flock) by the running supervisor: "is it running" without PID races
    logs/             one log per process
    postgres/         the PostgreSQL cluster (unless it had to live elsewhere, see postgres.py)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from koinonia_infra.files import write_atomic

STATE_FILE = "state.json"
SECRETS_FILE = "secrets.json"
LOCK_FILE = "supervisor.lock"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ProcessRecord(_Model):
    role: str
    pid: int
    pgid: int
    # psutil's creation time (seconds since the epoch): with the PID it names one process, on
    # Linux and macOS alike, as psutil.Process.is_running() itself compares them. A record of
    # an older sandbox (kernel ticks under `startTime`) has none and is trusted by PID alone.
    create_time: float | None = None


class SandboxState(_Model):
    running: bool = True
    supervisor: ProcessRecord
    processes: list[ProcessRecord] = Field(default_factory=list)
    ports: dict[str, int] = Field(default_factory=dict)
    postgres_dir: str | None = None
    started_at: str | None = None
    control_plane_url: str | None = None

    def all_records(self) -> list[ProcessRecord]:
        return [self.supervisor, *self.processes]


def process_create_time(pid: int) -> float | None:
    """When `pid` was created (psutil), None when it is gone or cannot be read."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def record_for(role: str, pid: int) -> ProcessRecord:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid
    return ProcessRecord(role=role, pid=pid, pgid=pgid, create_time=process_create_time(pid))


def is_alive(record: ProcessRecord) -> bool:
    """True while the recorded process runs and is still the one that was recorded."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(record.pid, os.WNOHANG)  # reap it if it happens to be our child
    try:
        process = psutil.Process(record.pid)
        # A zombie has exited; only its exit status is left for a parent that is not us.
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        if record.create_time is not None:
            return process.create_time() == record.create_time
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        pass  # another user's process: it exists, and its PID is all we can compare
    return True


def kill_record(record: ProcessRecord, sig: signal.Signals) -> None:
    """Signal the recorded process's group (or the process alone if it shares ours)."""
    if not is_alive(record):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if record.pgid == record.pid and record.pgid != os.getpgid(0):
            os.killpg(record.pgid, sig)
        else:
            os.kill(record.pid, sig)


def lock_held(state_dir: Path) -> bool:
    """True while a supervisor holds the state dir's lock: "running", without trusting PIDs."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_state(state_dir: Path) -> SandboxState | None:
    path = state_dir / STATE_FILE
    try:
        return SandboxState.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


# Both writers are atomic (koinonia_infra/files.py): on a full disk the old file stays whole, no
# `*.tmp` is left behind, and the EnvironmentProblem names the file and "No space left on device".


def write_state(state_dir: Path, state: SandboxState) -> None:
    text = state.model_dump_json(by_alias=True, indent=2) + "\n"
    write_atomic(state_dir / STATE_FILE, text, mode=0o644)


def write_private_json(path: Path, data: dict[str, str]) -> None:
    write_atomic(path, json.dumps(data), mode=0o600)


def load_secrets(state_dir: Path) -> dict[str, str]:
    """Passwords reused across `up`s (the cluster keeps its password); created on first use."""
    path = state_dir / SECRETS_FILE
    data: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            data = {str(k): str(v) for k, v in loaded.items()}
    changed = False
    for key in ("postgresPassword", "redisPassword"):
        if key not in data:
            data[key] = secrets.token_urlsafe(18)
            changed = True
    if changed:
        write_private_json(path, data)
    return data
