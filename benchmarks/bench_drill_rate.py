"""The failover drill's traffic holds its rate: achieved ÷ target within ±5 % at 200 req/s.

    .venv/bin/python benchmarks/bench_drill_rate.py [--rate 200] [--duration 10]

Starts a 2-instance sandbox in a temporary state dir, runs the real drill (suspend instance 1,
resume it) through the edge, prints the achieved rate, the generator's missed sends and the failed
requests, and stops the sandbox. Exits 1 when the rate is off by more than 5 %.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _timing import verdict

TOLERANCE = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()

    from koinonia_infra.measure.health import probe_health
    from koinonia_infra.ops.common import SteadyRun
    from koinonia_infra.ops.drill import run_failover_drill
    from koinonia_infra.render_api import RenderClient
    from koinonia_infra.sandbox.lifecycle import down, up

    with tempfile.TemporaryDirectory(prefix="koinonia-bench-") as tmp:
        state_dir = Path(tmp) / "sandbox"
        result = up(state_dir, 2)
        try:
            client = RenderClient.for_descriptor(result.descriptor)
            assert client is not None, "the sandbox descriptor carries its API token"
            with client:
                report = run_failover_drill(
                    result.descriptor,
                    client,
                    instance=1,
                    duration=args.duration,
                    rate=args.rate,
                    start_traffic=SteadyRun,
                    probe=probe_health,
                )
        finally:
            down(state_dir, purge=True)

    ratio = report.achieved_rate / report.target_rate
    ok = abs(ratio - 1) <= TOLERANCE
    print(f"drill traffic over {report.duration_seconds:g} s through the sandbox edge")
    print(f"  target rate      {report.target_rate:g} req/s")
    print(
        f"  achieved rate    {report.achieved_rate:g} req/s  (ratio {ratio:.3f}, ±{TOLERANCE:.0%})"
        f"  {verdict(ok)}"
    )
    print(
        f"  requests         {report.total_requests} ({report.failed_requests} failed, "
        f"{report.missed_sends} sends missed by the generator)"
    )
    print(
        f"  latency p50/p95  {report.p50_latency_ms:g} / {report.p95_latency_ms:g} ms "
        f"(max {report.max_latency_ms:g} ms)"
    )
    print(f"  drill outcome    {report.outcome}; resumed: {report.resumed}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
