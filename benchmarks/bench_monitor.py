"""`monitor` over 2 instances and a 1 h window answers in < 2 s against the sandbox.

    .venv/bin/python benchmarks/bench_monitor.py [--requests 5000] [--log-lines 20000] [--runs 5]

Starts a 2-instance sandbox in a temporary state dir, sends `--requests` GETs through the edge
(each a request line in an instance's log, counted by the control plane), appends `--log-lines`
application lines to the instances' log files (a noisy hour: every 20th an error), then times
`koinonia-infra monitor --target sandbox --since 1h --format json` end to end (a new process
each run: import, API reads, rendering), median of `--runs`. Exits 1 past the budget.

A sandbox only minutes old has minutes of CPU samples, not an hour's: the request and log
volume, not the sample count, is what this loads the control plane with.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _timing import ROOT, verdict, wall

BUDGET_SECONDS = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--log-lines", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from koinonia_infra.sandbox.lifecycle import down, up

    cli = str(Path(sys.executable).parent / "koinonia-infra")
    with tempfile.TemporaryDirectory(prefix="koinonia-bench-") as tmp:
        state_dir = Path(tmp) / "sandbox"
        result = up(state_dir, 2)
        try:
            edge = result.descriptor.edge_url
            with httpx.Client(timeout=10) as http, ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _i: http.get(edge + "/").status_code, range(args.requests)))
            for number in (1, 2):
                with (state_dir / "logs" / f"api-{number}.log").open("a") as log:
                    for i in range(args.log_lines // 2):
                        level = "ERROR" if i % 20 == 0 else "INFO"
                        log.write(f"{datetime.now(UTC).isoformat()} {level} job {i} done\n")
            argv = [cli, "monitor", "--target", "sandbox", "--state-dir", str(state_dir),
                    "--since", "1h", "--format", "json"]  # fmt: skip
            wall(argv, cwd=ROOT)  # warm-up, and the log lines are read by now
            times = [wall(argv, cwd=ROOT) for _ in range(args.runs)]
        finally:
            down(state_dir, purge=True)

    median = statistics.median(times)
    ok = median < BUDGET_SECONDS
    print(f"monitor --since 1h over 2 instances ({args.requests} requests, "
          f"{args.log_lines} log lines in the window)")  # fmt: skip
    print(f"  median of {args.runs}   {median:.2f} s (budget {BUDGET_SECONDS:g} s)  {verdict(ok)}")
    print(f"  runs           {', '.join(f'{t:.2f}' for t in times)} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
