"""Finding the sandbox's binaries: PostgreSQL, Redis and Caddy from the OS packages."""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from koinonia_infra.errors import EnvironmentProblem

# Debian installs PostgreSQL outside PATH; Homebrew keeps versioned kegs outside it too.
POSTGRES_DIR_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)

INSTALL_HINTS = {
    "postgres": "`apt-get install postgresql` (Debian) or `brew install postgresql@16` (macOS)",
    "redis-server": "`apt-get install redis-server` (Debian) or `brew install redis` (macOS)",
    "caddy": "`apt-get install caddy` (Debian) or `brew install caddy` (macOS)",
}


@dataclass(frozen=True)
class Binaries:
    initdb: Path
    pg_ctl: Path
    postgres: Path
    redis_server: Path
    caddy: Path


def _version_key(directory: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in directory).split()
    return tuple(int(d) for d in digits)


def _postgres_dir(path: str | None) -> Path | None:
    """A directory holding initdb, pg_ctl and postgres together (one version, never mixed)."""
    tools = ("initdb", "pg_ctl", "postgres")
    on_path = shutil.which("initdb", path=path)
    candidates: list[Path] = []
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
        candidates.append(Path(on_path).parent)
    for pattern in POSTGRES_DIR_GLOBS:
        candidates.extend(
            Path(d) for d in sorted(glob.glob(pattern), key=_version_key, reverse=True)
        )
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in tools):
            return directory
    return None


def missing_message(missing: list[str]) -> str:
    parts = [f"{name} not found: install it with {INSTALL_HINTS[name]}" for name in missing]
    return "sandbox needs " + "; ".join(parts)


def find_binaries(path: str | None = None) -> Binaries:
    """Locate every binary or raise one EnvironmentProblem naming all that are missing."""
    pg_dir = _postgres_dir(path)
    redis = shutil.which("redis-server", path=path)
    caddy = shutil.which("caddy", path=path)
    missing = [
        name
        for name, found in (("postgres", pg_dir), ("redis-server", redis), ("caddy", caddy))
        if found is None
    ]
    if missing or pg_dir is None or redis is None or caddy is None:
        raise EnvironmentProblem(missing_message(missing))
    return Binaries(
        initdb=pg_dir / "initdb",
        pg_ctl=pg_dir / "pg_ctl",
        postgres=pg_dir / "postgres",
        redis_server=Path(redis),
        caddy=Path(caddy),
    )
