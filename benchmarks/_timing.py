"""Shared helpers for the benchmarks: wall time of a command, median of interleaved runs."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def wall(
    argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def medians(
    commands: dict[str, tuple[Sequence[str], dict[str, str] | None]], runs: int
) -> dict[str, float]:
    """Interleave the commands so background load affects each alike; one warm-up each."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv, env in commands.values():
        wall(argv, cwd=ROOT, env=env)
    for _ in range(runs):
        for name, (argv, env) in commands.items():
            samples[name].append(wall(argv, cwd=ROOT, env=env))
    return {name: statistics.median(values) for name, values in samples.items()}


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"
