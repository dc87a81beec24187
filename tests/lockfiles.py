"""Reading the hash locks of requirements/ as pip installs them (shared by the lock and the
engine-environment tests)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.markers import Marker

# A pinned line of a lock (`uv pip compile` output): `name[extras]==version`, then the
# environment marker of a universal lock.
LOCK_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;([^\\]+))?")


def norm(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path: Path) -> dict[str, str]:
    """{distribution: version} a hash lock installs in this environment (its markers applied):
    with hashes, pip installs these and refuses anything else."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = LOCK_PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker is None or Marker(marker.strip()).evaluate():
            pins[norm(name)] = version
    return pins
