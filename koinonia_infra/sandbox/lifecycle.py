"""`sandbox up | status | down` on the CLI side: start the supervisor daemon and wait for it,
report on it, stop exactly what it started."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from koinonia_infra.descriptor import Descriptor, load_descriptor
from koinonia_infra.errors import EnvironmentProblem, Interrupted, OperationFailed, UsageError
from koinonia_infra.files import free_bytes
from koinonia_infra.measure.poll import poll
from koinonia_infra.sandbox.binaries import find_binaries
from koinonia_infra.sandbox.stack import SandboxStack, read_sandbox_stack, stack_for_supervisor
from koinonia_infra.sandbox.state import (
    LOCK_FILE,
    STATE_FILE,
    ProcessRecord,
    SandboxState,
    is_alive,
    kill_record,
    lock_held,
    read_state,
    write_state,
)
from koinonia_infra.sandbox.timing import profile as timing_profile
from koinonia_infra.targets import DESCRIPTOR_FILE, default_sandbox_dir, sandbox_descriptor_path

START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
MAX_INSTANCES = 9

Progress = Callable[[str], None]


@dataclass
class UpResult:
    state_dir: Path
    descriptor: Descriptor
    state: SandboxState | None
    already_running: bool
    seconds: float = 0.0
    # The settings its edge and `verify --target sandbox` follow (sandbox/stack.py).
    stack: SandboxStack = field(default_factory=SandboxStack)


@dataclass
class ProbeResult:
    name: str
    url: str
    ok: bool
    detail: str


@dataclass
class StatusResult:
    state_dir: Path
    running: bool
    processes: list[tuple[ProcessRecord, bool]] = field(default_factory=list)
    descriptor: Descriptor | None = None
    probes: list[ProbeResult] = field(default_factory=list)


@dataclass
class DownResult:
    state_dir: Path
    was_running: bool
    stopped: list[ProcessRecord] = field(default_factory=list)
    killed: list[ProcessRecord] = field(default_factory=list)
    purged: list[Path] = field(default_factory=list)


def resolve_state_dir(state_dir: Path | None) -> Path:
    return (state_dir or default_sandbox_dir()).expanduser().resolve()


def up(
    state_dir: Path | None,
    instances: int = 2,
    progress: Progress | None = None,
    timing: str = "fast",
    stack: SandboxStack | None = None,
) -> UpResult:
    """Start a sandbox (or report the running one) and wait until every part is healthy.
    `timing` is the profile of koinonia_infra/sandbox/timing.py ("fast" or "render"); `stack`
    the edge and verify settings to run with (the defaults when None). A running sandbox keeps
    the settings it started with."""
    say = progress or (lambda _m: None)
    timing_profile(timing)  # a UsageError before anything starts
    if not 1 <= instances <= MAX_INSTANCES:
        raise UsageError(f"--instances {instances}: choose between 1 and {MAX_INSTANCES}")
    directory = resolve_state_dir(state_dir)
    find_binaries()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise EnvironmentProblem(f"{directory}: cannot use as state dir: {exc.strerror}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        if not sandbox_descriptor_path(directory).exists():
            raise OperationFailed(
                f"a sandbox is still starting in {directory}; see `koinonia-infra sandbox status`"
            ) from None
        return UpResult(
            directory, load_descriptor(sandbox_descriptor_path(directory)), read_state(directory),
            already_running=True, stack=read_sandbox_stack(directory),
        )  # fmt: skip
    started = time.monotonic()
    try:
        _reap_leftovers(directory)
        # A descriptor left by a supervisor that never stopped cleanly names dead ports; while
        # none exists, a concurrent `up` says "still starting" instead of handing it out.
        sandbox_descriptor_path(directory).unlink(missing_ok=True)
        with (directory / "supervisor.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "koinonia_infra.sandbox.supervisor",
                 "--state-dir", str(directory), "--instances", str(instances),
                 "--lock-fd", str(lock_fd), "--timing", timing],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                pass_fds=(lock_fd,), start_new_session=True,
                # The edge and verify settings to run with (sandbox/stack.py).
                env={**os.environ, **stack_for_supervisor(stack or SandboxStack())},
            )  # fmt: skip
    finally:
        os.close(lock_fd)
    try:
        _wait_ready(proc, directory, say)
    except (KeyboardInterrupt, Interrupted):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    return UpResult(
        directory, load_descriptor(sandbox_descriptor_path(directory)), read_state(directory),
        already_running=False, seconds=time.monotonic() - started, stack=stack or SandboxStack(),
    )  # fmt: skip


def _wait_ready(proc: subprocess.Popen[bytes], directory: Path, say: Progress) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    buffer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            raise EnvironmentProblem(
                f"sandbox did not become healthy within {START_TIMEOUT:.0f}s; "
                f"see {directory / 'logs'}"
            )
        readable, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.5))
        if not readable:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            proc.wait(5)
            raise EnvironmentProblem(
                f"sandbox supervisor exited during start (code {proc.returncode}); "
                f"see {directory / 'supervisor.log'}{disk_full_note(directory)}"
            )
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind, message = event.get("event"), str(event.get("message", ""))
            if kind == "progress":
                say(message)
            elif kind == "ready":
                return
            elif kind == "error":
                proc.wait(STOP_TIMEOUT)
                note = "" if "No space left" in message else disk_full_note(directory)
                raise EnvironmentProblem(f"sandbox failed to start: {message}{note}")


# Below this, the state dir's filesystem is called full: PostgreSQL alone needs ~40 MB for initdb.
DISK_FULL_BYTES = 1 << 20


def disk_full_note(directory: Path) -> str:
    """The likely cause when the supervisor fails and its log (on the same disk) is empty."""
    free = free_bytes(directory)
    if free is None or free >= DISK_FULL_BYTES:
        return ""
    return (
        f"; no space left on the filesystem of {directory} ({free} bytes free): "
        "the logs there may be empty; free some space and run `sandbox up` again"
    )


def _reap_leftovers(directory: Path) -> None:
    """A supervisor that died uncleanly (SIGKILL) may have left children: stop those first."""
    state = read_state(directory)
    if state is not None and any(is_alive(r) for r in state.processes):
        _stop_records(state.processes)


def _stop_records(records: list[ProcessRecord]) -> list[ProcessRecord]:
    """SIGTERM (postgres: SIGINT, its fast shutdown), then SIGKILL after a grace period."""
    for record in records:
        kill_record(record, signal.SIGINT if record.role == "postgres" else signal.SIGTERM)
    poll(
        lambda: any(is_alive(r) for r in records),
        lambda alive: not alive,
        deadline=time.monotonic() + 10,
        interval=0.05,
        max_interval=0.5,
    )
    stubborn = [r for r in records if is_alive(r)]
    for record in stubborn:
        kill_record(record, signal.SIGKILL)
    return stubborn


def status(state_dir: Path | None) -> StatusResult:
    """What runs, and whether each instance and the edge answer /health."""
    directory = resolve_state_dir(state_dir)
    state = read_state(directory)
    if state is None:
        return StatusResult(directory, running=False)
    records = state.all_records()
    processes = [(r, is_alive(r)) for r in records]
    running = lock_held(directory) and processes[0][1]
    result = StatusResult(directory, running=running, processes=processes)
    path = sandbox_descriptor_path(directory)
    if path.exists():
        result.descriptor = load_descriptor(path)
    if running and result.descriptor is not None:
        result.probes = _probe(result.descriptor)
    return result


def _probe(descriptor: Descriptor) -> list[ProbeResult]:
    """Each instance's and the edge's /health, judged by the one rule (`measure.health`)."""
    from koinonia_infra.measure.health import health_url, probe_health_many

    targets = [(i.name, i.url) for i in descriptor.instances]
    targets.append((descriptor.edge.name if descriptor.edge else "edge", descriptor.edge_url))
    verdicts = probe_health_many([health_url(url) for _, url in targets], timeout=2.0)
    return [
        ProbeResult(name, url, verdict.ok, verdict.detail)
        for (name, url), verdict in zip(targets, verdicts, strict=True)
    ]


def down(state_dir: Path | None, *, purge: bool = False) -> DownResult:
    """Stop exactly the recorded processes; with `purge`, also delete the state dir's data."""
    directory = resolve_state_dir(state_dir)
    state = read_state(directory)
    result = DownResult(directory, was_running=False)
    if state is not None:
        records = state.all_records()
        result.was_running = any(is_alive(r) for r in records)
        alive_before = [r for r in records if is_alive(r)]
        if is_alive(state.supervisor):
            kill_record(state.supervisor, signal.SIGTERM)
            poll(
                lambda: is_alive(state.supervisor),
                lambda alive: not alive,
                deadline=time.monotonic() + STOP_TIMEOUT,
                interval=0.05,
                max_interval=0.5,
            )
        # The supervisor may have started processes after we read the record (a deploy).
        latest = read_state(directory) or state
        leftovers = {r.pid: r for r in [*records, *latest.all_records()] if is_alive(r)}
        result.killed = _stop_records(list(leftovers.values())) if leftovers else []
        result.stopped = alive_before
        latest.running = False
        latest.processes = []
        write_state(directory, latest)
    # Derived state, not user data: without it `--target sandbox` says "no sandbox, start one"
    # instead of trying the ports of a stopped one. (The supervisor removes it too on SIGTERM.)
    sandbox_descriptor_path(directory).unlink(missing_ok=True)
    if purge:
        result.purged = _purge(directory, state)
    return result


def _purge(directory: Path, state: SandboxState | None) -> list[Path]:
    if not directory.exists():
        return []
    markers = (STATE_FILE, DESCRIPTOR_FILE, LOCK_FILE)
    if not any((directory / m).exists() for m in markers):
        raise UsageError(f"{directory} does not look like a sandbox state dir; nothing removed")
    removed = []
    if state is not None and state.postgres_dir:
        external = Path(state.postgres_dir)
        if external.exists() and directory not in external.parents:
            shutil.rmtree(external, ignore_errors=True)
            removed.append(external)
    shutil.rmtree(directory, ignore_errors=True)
    removed.append(directory)
    return removed
