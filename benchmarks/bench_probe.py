"""The traffic probe must not distort what it measures: side by side with `wrk` on the sandbox
edge, and the whole `verify` on a 2-instance sandbox.

    .venv/bin/python benchmarks/bench_probe.py [--state-dir DIR] [--rounds N]

Against a target faster than any client (the edge's self-answered `/_edge/health`, Caddy's own
`respond`): probe req/s ÷ wrk req/s at concurrency 32 ≥ 0.7, probe p50 ÷ wrk p50 at concurrency 8
≤ 1.5. Against the sandbox's `/health` (through the edge to the instances): probe req/s ÷ wrk
req/s at concurrency 32 ≥ 0.9. `verify --requests 1000` < 3 s. Starts (and stops) its own sandbox
unless --state-dir names a running one. Without `wrk` (scripts/system-deps.sh installs it) the
comparison is skipped with a message. Exits 1 when a target is missed. Rounds are interleaved so
background load affects both clients alike.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import ROOT

SELF_RATE_TARGET = 0.7
SELF_P50_TARGET = 1.5
HEALTH_RATE_TARGET = 0.9
VERIFY_LIMIT = 3.0
SECONDS = 3
SHARED: dict[int, int] = {}  # the probe's modes seen, each said once


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    if not match:
        raise SystemExit(f"cannot read wrk latency {value!r}")
    number, unit = float(match.group(1)), match.group(2)
    return number / 1000 if unit == "us" else number * 1000 if unit == "s" else number


def run_wrk(url: str, concurrency: int) -> tuple[float, float]:
    """(req/s, p50 ms)."""
    threads = min(2, concurrency)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{SECONDS}s", "--latency", url],
        capture_output=True, text=True, timeout=SECONDS + 30, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return rps, p50


def run_probe(url: str, concurrency: int, requests: int) -> tuple[float, float]:
    from koinonia_infra.measure.load import burst
    from koinonia_infra.measure.samples import latency_summary

    result = burst(url, requests=requests, concurrency=concurrency)
    failed = sum(1 for s in result.samples if not s.ok)
    if failed:
        print(f"  warning: {failed} probe request(s) failed", file=sys.stderr)
    if result.processes not in SHARED:
        SHARED[result.processes] = requests
        how = "shared with a helper process" if result.processes == 2 else "in one process"
        print(f"  (the probe ran {how}: {requests:,} requests at concurrency {concurrency})")
    p50 = latency_summary(result.samples).p50_ms
    assert p50 is not None
    return result.requests_per_second, p50


def time_verify(state_dir: Path) -> float:
    cli = "from koinonia_infra.cli import main; main()"
    argv = [sys.executable, "-c", cli, "verify", "--target", "sandbox",
            "--state-dir", str(state_dir), "--requests", "1000", "--format", "json"]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode not in (0, 1):  # 1: it ran and a check failed; its time still counts
        print(done.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"verify could not run (exit {done.returncode})")
    report = json.loads(done.stdout)
    for check in report["checks"]:
        if check["status"] == "fail":
            print(f"  note: {check['id']} {check['target']} failed: {check['reason']}")
    reported = report["durationSeconds"]
    print(f"verify --requests 1000: {elapsed:.2f} s wall ({reported:.2f} s inside verify)")
    return elapsed


def compare(url: str, rounds: int, *, p50: bool) -> tuple[float, float | None]:
    """Median (probe ÷ wrk req/s at concurrency 32, probe ÷ wrk p50 at concurrency 8 or None)."""
    run_probe(url, 8, 500)  # warm-up: connections, caches, Caddy's health state
    w32, p32, w8, p8 = [], [], [], []
    for _ in range(rounds):
        w32.append(run_wrk(url, 32))
        p32.append(run_probe(url, 32, max(500, int(w32[-1][0] * SECONDS))))
        if p50:
            w8.append(run_wrk(url, 8))
            p8.append(run_probe(url, 8, max(500, int(w8[-1][0] * SECONDS))))
    wrk_rps = statistics.median(r for r, _ in w32)
    probe_rps = statistics.median(r for r, _ in p32)
    print(f"  concurrency 32: probe {probe_rps:,.0f} req/s, wrk {wrk_rps:,.0f} req/s "
          f"-> ratio {probe_rps / wrk_rps:.3f}")  # fmt: skip
    if not p50:
        return probe_rps / wrk_rps, None
    wrk_p50 = statistics.median(p for _, p in w8)
    probe_p50 = statistics.median(p for _, p in p8)
    print(f"  concurrency 8:  probe p50 {probe_p50:.2f} ms, wrk p50 {wrk_p50:.2f} ms "
          f"-> ratio {probe_p50 / wrk_p50:.3f}")  # fmt: skip
    return probe_rps / wrk_rps, probe_p50 / wrk_p50


def bench(state_dir: Path, rounds: int) -> int:
    from koinonia_infra.caddy import EDGE_SELF_HEALTH_PATH
    from koinonia_infra.descriptor import load_descriptor
    from koinonia_infra.targets import sandbox_descriptor_path

    edge = load_descriptor(sandbox_descriptor_path(state_dir)).edge_url.rstrip("/")
    ok = True
    if shutil.which("wrk") is None:
        print("wrk not installed: skipping the probe-vs-wrk comparison (scripts/system-deps.sh)")
    else:
        print(f"{EDGE_SELF_HEALTH_PATH} (answered by the edge itself):")
        rate, p50 = compare(edge + EDGE_SELF_HEALTH_PATH, rounds, p50=True)
        assert p50 is not None
        print(f"  rate ratio {rate:.3f} (target >= {SELF_RATE_TARGET}), "
              f"p50 ratio {p50:.3f} (target <= {SELF_P50_TARGET})")  # fmt: skip
        ok = rate >= SELF_RATE_TARGET and p50 <= SELF_P50_TARGET
        print("/health (through the edge to the instances):")
        rate, _ = compare(edge + "/health", rounds, p50=False)
        print(f"  rate ratio {rate:.3f} (target >= {HEALTH_RATE_TARGET})")
        ok = ok and rate >= HEALTH_RATE_TARGET
    elapsed = statistics.median(time_verify(state_dir) for _ in range(rounds))
    print(f"verify median: {elapsed:.2f} s (target < {VERIFY_LIMIT} s)")
    ok = ok and elapsed < VERIFY_LIMIT
    print("PASS" if ok else "FAIL: a target was missed")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, help="a running sandbox to use")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.state_dir is not None:
        return bench(args.state_dir, args.rounds)
    from koinonia_infra.sandbox.lifecycle import down, up

    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        state_dir = Path(tmp)
        up(state_dir, 2)
        try:
            return bench(state_dir, args.rounds)
        finally:
            down(state_dir, purge=True)


if __name__ == "__main__":
    sys.exit(main())
