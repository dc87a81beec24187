"""`koinonia-infra plan` wall time: the prod stack (2 instances) under 3 s, and a 50-instance
stack ÷ the 2-instance one ≤ 2.0 (the mock evaluation must scale linearly).

    .venv/bin/python benchmarks/bench_plan.py [--runs N]

Each run is a fresh process (`plan --format json`, what CI would run), so the times include
imports. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _timing import PYTHON, ROOT, medians, verdict

LIMIT_SECONDS = 3.0
RATIO_TARGET = 2.0
BIG = 50


def fifty_instance_project(folder: Path) -> Path:
    """A copy of the project whose prod stack declares instances 1..50."""
    shutil.copy(ROOT / "Pulumi.yaml", folder / "Pulumi.yaml")
    text = (ROOT / "Pulumi.prod.yaml").read_text(encoding="utf-8")
    numbers = ", ".join(str(n) for n in range(1, BIG + 1))
    replaced = text.replace("instances: [1, 2]", f"instances: [{numbers}]")
    if replaced == text:
        raise SystemExit("Pulumi.prod.yaml no longer has `instances: [1, 2]`; update this script")
    (folder / "Pulumi.prod.yaml").write_text(replaced, encoding="utf-8")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    argv = [PYTHON, "-c", "from koinonia_infra.cli import main; main()"]
    argv += ["plan", "--stack", "prod", "--format", "json"]
    with tempfile.TemporaryDirectory() as tmp:
        big = fifty_instance_project(Path(tmp))
        base_env = {k: v for k, v in os.environ.items() if k != "KOINONIA_PROJECT_DIR"}
        times = medians(
            {
                "2": (argv, {**base_env, "KOINONIA_PROJECT_DIR": str(ROOT)}),
                "50": (argv, {**base_env, "KOINONIA_PROJECT_DIR": str(big)}),
            },
            args.runs,
        )
    ratio = times["50"] / times["2"]
    fast = times["2"] < LIMIT_SECONDS
    linear = ratio <= RATIO_TARGET
    print(
        f"plan, 2 instances  : {times['2']:6.2f} s (median of {args.runs}; "
        f"limit {LIMIT_SECONDS:.0f} s) {verdict(fast)}"
    )
    print(f"plan, {BIG} instances : {times['50']:6.2f} s")
    print(f"ratio {BIG} ÷ 2       : {ratio:6.2f}   (target ≤ {RATIO_TARGET}) {verdict(linear)}")
    return 0 if fast and linear else 1


if __name__ == "__main__":
    sys.exit(main())
