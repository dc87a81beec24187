"""Shared fixtures.

`sandbox`: a started 2-instance sandbox (real PostgreSQL, Redis, API instances, Caddy edge and
control plane) in a fresh state dir, stopped and purged after the test. Use it from tests marked
`@pytest.mark.integration`. It yields a `SandboxHandle`:

    sandbox.state_dir      Path; pass as `--state-dir` with `--target sandbox`
    sandbox.descriptor     the loaded Descriptor (edge_url, instances, render_api_url)
    sandbox.token          the control plane's bearer token (also descriptor.render_api_key)
    sandbox.api_url        the control plane base URL (…/v1); sandbox.auth_headers for httpx
    sandbox.pid("redis")   PID of a role: supervisor, postgres, redis, edge, api-1, api-2, …
    sandbox.stop("redis")  stop one process behind the sandbox's back (SIGTERM, waits until gone)
    sandbox.kill("api-1")  same with SIGKILL

`render_timed_sandbox`: the same, started with `--timing render` (Render's suspend/resume/deploy
sequence with scaled delays, koinonia_infra/sandbox/timing.py).

`sandbox_state_dir`: an empty state dir for tests that run `sandbox up` themselves (stopped and
purged after the test).

`require_sandbox_binaries()`: skips with the reason when postgres/redis-server/caddy are
missing, but FAILS under CI=true, where a skip would count as a pass.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from koinonia_infra.descriptor import Descriptor


def require_sandbox_binaries() -> None:
    from koinonia_infra.errors import EnvironmentProblem
    from koinonia_infra.sandbox.binaries import find_binaries

    try:
        find_binaries()
    except EnvironmentProblem as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the sandbox cannot run: {exc}", pytrace=False)
        pytest.skip(f"sandbox binaries missing: {exc}")


@dataclass
class SandboxHandle:
    state_dir: Path
    descriptor: Descriptor
    token: str

    @property
    def api_url(self) -> str:
        assert self.descriptor.render_api_url is not None
        return self.descriptor.render_api_url

    @property
    def edge_url(self) -> str:
        return self.descriptor.edge_url

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def pid(self, role: str) -> int:
        from koinonia_infra.sandbox.state import read_state

        state = read_state(self.state_dir)
        assert state is not None, f"no state.json in {self.state_dir}"
        for record in state.all_records():
            if record.role == role:
                return record.pid
        roles = [r.role for r in state.all_records()]
        raise AssertionError(f"no process {role!r} in the sandbox (have {roles})")

    def stop(self, role: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 10) -> None:
        from koinonia_infra.sandbox.state import is_alive, read_state

        state = read_state(self.state_dir)
        assert state is not None
        record = next(r for r in state.all_records() if r.role == role)
        os.kill(record.pid, sig)
        deadline = time.monotonic() + timeout
        while is_alive(record):
            assert time.monotonic() < deadline, f"{role} (pid {record.pid}) did not stop"
            time.sleep(0.05)

    def kill(self, role: str) -> None:
        self.stop(role, signal.SIGKILL)


@pytest.fixture(scope="session")
def _sandbox_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """One initdb per test session, copied into each sandbox: initdb is most of `up`'s time."""
    from koinonia_infra.errors import KoinoniaError
    from koinonia_infra.sandbox import postgres
    from koinonia_infra.sandbox.binaries import find_binaries
    from koinonia_infra.sandbox.state import load_secrets

    template = _traversable_tmpdir("koinonia-sbx-template-")
    try:
        user = postgres.choose_user()
        root = postgres.cluster_root(template, user)
        if root != template / "postgres":
            yield None
            return
        postgres.ensure_cluster(
            find_binaries(), root, load_secrets(template)["postgresPassword"], user
        )
    except KoinoniaError:
        yield None  # the sandbox fixture reports the real problem
        return
    try:
        yield template
    finally:
        shutil.rmtree(template, ignore_errors=True)


def _traversable_tmpdir(prefix: str) -> Path:
    # Under root, PostgreSQL runs as an unprivileged user that must reach the cluster directory:
    # pytest's own tmp dirs are private (0700), so use a world-traversable one.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=tempfile.gettempdir())).resolve()
    path.chmod(0o755)
    return path


@pytest.fixture
def sandbox_state_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    require_sandbox_binaries()
    from koinonia_infra.sandbox.lifecycle import down

    path = _traversable_tmpdir("koinonia-sbx-")
    template: Path | None = request.getfixturevalue("_sandbox_template")
    if template is not None:
        subprocess.run(["cp", "-a", str(template / "postgres"), str(path / "postgres")], check=True)
        shutil.copy2(template / "secrets.json", path / "secrets.json")
    try:
        yield path
    finally:
        down(path, purge=True)
        shutil.rmtree(path, ignore_errors=True)


def _started_sandbox(state_dir: Path, timing: str) -> Iterator[SandboxHandle]:
    from koinonia_infra.sandbox.lifecycle import down, up
    from koinonia_infra.sandbox.state import is_alive, read_state

    result = up(state_dir, 2, timing=timing)
    key = result.descriptor.render_api_key
    assert key is not None
    try:
        yield SandboxHandle(state_dir, result.descriptor, key.get_secret_value())
    finally:
        state = read_state(state_dir)
        down(state_dir)
        if state is not None:
            leftovers = [r for r in state.all_records() if is_alive(r)]
            assert not leftovers, f"sandbox left processes behind: {leftovers}"


@pytest.fixture
def sandbox(sandbox_state_dir: Path) -> Iterator[SandboxHandle]:
    yield from _started_sandbox(sandbox_state_dir, "fast")


@pytest.fixture
def render_timed_sandbox(sandbox_state_dir: Path) -> Iterator[SandboxHandle]:
    """Like `sandbox`, started with `--timing render`: Render's sequence with scaled delays
    (see koinonia_infra/sandbox/timing.py; `descriptor.sandbox_timing == "render"`)."""
    yield from _started_sandbox(sandbox_state_dir, "render")


@dataclass
class SmallDisk:
    """A tiny tmpfs of its own (`path`); `fill(leave)` takes all but `leave` bytes of it."""

    path: Path

    def free(self) -> int:
        vfs = os.statvfs(self.path)
        return vfs.f_bavail * vfs.f_frsize

    def fill(self, leave: int = 0) -> None:
        with (self.path / "filler").open("ab") as fh:
            while self.free() > leave:
                try:
                    fh.write(b"\0" * min(4096, self.free() - leave))
                    fh.flush()
                except OSError:
                    break

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    """A 64 KiB tmpfs (mount needs root): a full disk for real, without filling the machine's.
    Skips with the reason where mounting is not permitted, but FAILS under CI=true."""
    path = Path(tempfile.mkdtemp(prefix="koinonia-disk-"))
    # Root mounts directly; elsewhere (a GitHub runner) passwordless sudo, never a prompt.
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    mount = [*sudo, "mount", "-t", "tmpfs", "-o", "size=64k,mode=1777", "tmpfs", str(path)]
    try:
        mounted = subprocess.run(mount, capture_output=True, text=True, check=False)
        problem = mounted.stderr.strip() or f"exit code {mounted.returncode}"
        ok = mounted.returncode == 0
    except OSError as exc:
        problem, ok = str(exc), False
    if not ok:
        path.rmdir()
        reason = f"cannot mount a small tmpfs ({' '.join(mount[:-1])}): {problem}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run([*sudo, "umount", "-l", str(path)], capture_output=True, check=False)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox_binaries() -> None:
    """For tests that start the sandbox themselves (skip, or fail under CI=true, without them)."""
    require_sandbox_binaries()
