"""The sandbox's PostgreSQL cluster: initdb once, pg_ctl start/stop.

initdb and postgres refuse to run as root. When the sandbox runs as root (CI does), they run as
an unprivileged user — Debian's `postgres` (created by the postgresql package), else `nobody` —
and the cluster directory is owned by that user. That user must be able to traverse every parent
of the cluster directory; when the state dir sits under a private root-only directory (e.g.
/root or pytest's tmp dirs) the cluster lives in /var/tmp/koinonia-sandbox-pg-<hash> instead,
recorded in state.json and removed by `sandbox down --purge`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from koinonia_infra.errors import EnvironmentProblem
from koinonia_infra.sandbox.binaries import Binaries

DB_NAME = "koinonia"
DB_USER = "koinonia"
_CONF_INCLUDE = "include_if_exists = 'koinonia-sandbox.conf'\n"


@dataclass(frozen=True)
class RunAs:
    """Who runs PostgreSQL: None fields mean "the current user"."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None


def choose_user() -> RunAs:
    if os.geteuid() != 0:
        return RunAs()
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=name)
    raise EnvironmentProblem(
        "running as root, but no unprivileged user (postgres, nobody) exists for PostgreSQL; "
        "create one, e.g. `useradd --system postgres`"
    )


def _traversable(path: Path, user: RunAs) -> bool:
    if user.uid is None:
        return True
    groups = {user.gid} if user.gid is not None else set()
    if user.name:
        groups |= set(os.getgrouplist(user.name, user.gid or 0))
    for parent in [path, *path.parents]:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == user.uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


def cluster_root(state_dir: Path, user: RunAs) -> Path:
    """Where the cluster lives: `<state>/postgres` whenever the postgres user can reach it."""
    preferred = state_dir.resolve() / "postgres"
    if _traversable(state_dir.resolve(), user):
        return preferred
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"koinonia-sandbox-pg-{digest}"


def _run(cmd: list[str], user: RunAs, cwd: Path, what: str, timeout: float = 60) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": str(cwd),
    }
    try:
        result = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            user=user.uid,
            group=user.gid,
            extra_groups=[] if user.uid is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentProblem(f"{what} failed: {exc}") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        # initdb's last line is its cleanup ("removing data directory"); on a full disk the
        # cause is an earlier "could not write …: No space left on device" line.
        causes = [line for line in lines if "No space left on device" in line]
        last = (causes or lines)[-1] if lines else f"exit code {result.returncode}"
        raise EnvironmentProblem(f"{what} failed: {last}")


def _own(path: Path, user: RunAs) -> None:
    if user.uid is not None:
        os.chown(path, user.uid, user.gid if user.gid is not None else -1)


def ensure_cluster(bins: Binaries, root: Path, password: str, user: RunAs) -> Path:
    """initdb into `root/data` unless a cluster is already there; returns the data dir."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    _own(root, user)
    data = root / "data"
    if (data / "PG_VERSION").exists():
        return data
    pwfile = root / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    _own(pwfile, user)
    try:
        _run(
            [
                str(bins.initdb), "-D", str(data), "-U", DB_USER, "--pwfile", str(pwfile),
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                "--locale=C", "--no-sync", "--no-instructions",
            ],
            user, root, "initdb",
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    with (data / "postgresql.conf").open("a", encoding="utf-8") as fh:
        fh.write(_CONF_INCLUDE)
    return data


def start(bins: Binaries, root: Path, data: Path, port: int, user: RunAs) -> int:
    """pg_ctl start, waiting until it accepts connections; returns the postmaster PID."""
    conf = data / "koinonia-sandbox.conf"
    conf.write_text(
        "# Written by koinonia-infra sandbox on every start.\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        # Unix sockets are not needed and their path length limit breaks deep state dirs.
        "unix_socket_directories = ''\n"
        "max_connections = 200\n"
        # A rehearsal database: durability traded for speed.
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
        encoding="utf-8",
    )
    _own(conf, user)
    _run(
        [str(bins.pg_ctl), "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-t", "30",
         "start"],
        user, root, "pg_ctl start",
    )  # fmt: skip
    return postmaster_pid(data)


def postmaster_pid(data: Path) -> int:
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        raise EnvironmentProblem(f"{data}: postgres started but left no postmaster.pid") from None


def stop(bins: Binaries, root: Path, data: Path, user: RunAs) -> None:
    _run(
        [str(bins.pg_ctl), "-D", str(data), "-m", "fast", "-w", "-t", "20", "stop"],
        user, root, "pg_ctl stop",
    )  # fmt: skip


def create_database(port: int, password: str) -> None:
    import psycopg

    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=DB_USER, password=password, dbname="postgres",
            autocommit=True, connect_timeout=5,
        ) as conn:  # fmt: skip
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    except psycopg.Error as exc:
        raise EnvironmentProblem(f"postgres on 127.0.0.1:{port}: {exc}".splitlines()[0]) from None


def database_url(port: int, password: str) -> str:
    return f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"
