"""`koinonia-infra plan` at the instance bound (settings.MAX_INSTANCE, 100): within seconds and
hundreds of MB, in a fresh process.

    .venv/bin/python benchmarks/bench_plan_bound.py

Measured on the 2-core dev machine: about 3 s and 100 MB of peak RSS for 100 instances (before
the bound, 1,000 instances took 14.5 s and 264 MB; the mock runtime's per-resource registration
is the cost, linear in the instance count). Exits 1 when a limit is missed.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

from _timing import PYTHON, ROOT, verdict, wall

from koinonia_infra.settings import MAX_INSTANCE

LIMIT_SECONDS = 10.0
LIMIT_MB = 300.0


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(ROOT / "Pulumi.yaml", folder / "Pulumi.yaml")
        text = (ROOT / "Pulumi.prod.yaml").read_text(encoding="utf-8")
        numbers = ", ".join(str(n) for n in range(1, MAX_INSTANCE + 1))
        replaced = text.replace("instances: [1, 2]", f"instances: [{numbers}]")
        if replaced == text:
            raise SystemExit("Pulumi.prod.yaml no longer has `instances: [1, 2]`; update this")
        (folder / "Pulumi.prod.yaml").write_text(replaced, encoding="utf-8")
        env = {**os.environ, "KOINONIA_PROJECT_DIR": str(folder)}
        argv = [PYTHON, "-c", "from koinonia_infra.cli import main; main()"]
        seconds = wall([*argv, "plan", "--stack", "prod", "--format", "json"], env=env)
    # Linux reports ru_maxrss in KiB: the largest child so far, i.e. the plan process.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    fast, small = seconds <= LIMIT_SECONDS, peak_mb <= LIMIT_MB
    print(
        f"plan, {MAX_INSTANCE} instances: {seconds:6.2f} s "
        f"(limit {LIMIT_SECONDS:.0f} s) {verdict(fast)}"
    )
    print(f"peak memory        : {peak_mb:6.0f} MB (limit {LIMIT_MB:.0f} MB) {verdict(small)}")
    return 0 if fast and small else 1


if __name__ == "__main__":
    sys.exit(main())
