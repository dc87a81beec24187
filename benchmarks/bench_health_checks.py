"""The reference instance's /health checks: CPU per call of the hand-written ones (libpq's
non-blocking `SELECT 1` on a small pool, PING over raw pipelined RESP) against the kept
libraries (psycopg_pool + `execute("SELECT 1")`, redis.asyncio `ping()`), on a real sandbox's
PostgreSQL and Redis.

    .venv/bin/python benchmarks/bench_health_checks.py [--state-dir DIR] [--calls N]

Each implementation answers N calls at concurrency 16, rounds interleaved; reported: CPU
microseconds per call (this process's user + system time) and calls per second. Then the whole
instance: a reference instance with the hand checks and one with the libraries each answer N
`GET /health` at concurrency 16, and the instance process's own CPU per request is reported
(psutil), which the client's speed does not change. The sandbox's API instances run this code
on every /health, which `verify` and the probe hammer, so the CPU per request is what bounds an
instance on a 2-core machine. Informative: exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from koinonia_infra.sandbox import postgres
from koinonia_infra.sandbox.api_server import (
    PostgresCheck,
    PostgresPoolCheck,
    RedisCheck,
    RedisClientCheck,
)
from koinonia_infra.sandbox.lifecycle import down, up

CONCURRENCY = 16
Check = Callable[[], Awaitable[bool]]


async def _run(check: Check, calls: int) -> tuple[float, float]:
    """(CPU µs per call, calls per second) of `calls` checks, CONCURRENCY at a time."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if not await check():
                raise SystemExit("a check failed: the sandbox's datastores are not answering")

    for _ in range(CONCURRENCY):  # warm the pools and connections
        await check()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / calls * 1e6, calls / wall


async def _compare(db_url: str, redis_url: str, calls: int, rounds: int) -> dict[str, object]:
    candidates: dict[str, Check] = {
        "postgres, hand (libpq SELECT 1)": PostgresCheck(db_url),
        "postgres, psycopg_pool": PostgresPoolCheck(db_url),
        "redis, hand (raw RESP)": RedisCheck(redis_url),
        "redis, redis.asyncio": RedisClientCheck(redis_url),
    }
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    rate: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, check in candidates.items():
            per_call, per_second = await _run(check, calls)
            cpu[name].append(per_call)
            rate[name].append(per_second)
    for check in candidates.values():
        await check.close()  # type: ignore[attr-defined]
    return {
        name: {
            "cpuMicrosecondsPerCall": round(statistics.median(cpu[name]), 1),
            "callsPerSecond": round(statistics.median(rate[name])),
        }
        for name in candidates
    }


# The reference instance with the library checks in place of the hand ones, for comparison.
_LIBRARY_INSTANCE = (
    "import koinonia_infra.sandbox.api_server as s\n"
    "s.PostgresCheck = s.PostgresPoolCheck\n"
    "s.RedisCheck = s.RedisClientCheck\n"
    "s.main()\n"
)
_HAND_INSTANCE = "import koinonia_infra.sandbox.api_server as s\ns.main()\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _drive(url: str, requests: int) -> None:
    left = requests
    async with httpx.AsyncClient(timeout=10) as client:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                response = await client.get(url)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {response.status_code}")

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _instance_cpu(code: str, env: dict[str, str], requests: int) -> float:
    """CPU µs per `GET /health` of a reference instance running `code`."""
    import psutil

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", str(port)], env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/health"
        deadline = time.monotonic() + 20
        while True:
            try:
                asyncio.run(_drive(url, CONCURRENCY))  # also warms its pools
                break
            except httpx.TransportError:  # not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        server = psutil.Process(proc.pid)
        before = server.cpu_times()
        asyncio.run(_drive(url, requests))
        after = server.cpu_times()
        used = (after.user - before.user) + (after.system - before.system)
        return used / requests * 1e6
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, help="a running sandbox's state dir")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    own = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="koinonia-bench-")) if own else args.state_dir
    try:
        if own:
            up(state_dir, 1)
        state = json.loads((state_dir / "state.json").read_text())
        secrets = json.loads((state_dir / "secrets.json").read_text())
        ports = state["ports"]
        db_url = postgres.database_url(ports["postgres"], secrets["postgresPassword"])
        redis_url = f"redis://:{secrets['redisPassword']}@127.0.0.1:{ports['redis']}/0"
        result = asyncio.run(_compare(db_url, redis_url, args.calls, args.rounds))
        env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url}
        per_request: dict[str, list[float]] = {"hand": [], "libraries": []}
        for _ in range(args.rounds):
            per_request["hand"].append(_instance_cpu(_HAND_INSTANCE, env, args.calls))
            per_request["libraries"].append(_instance_cpu(_LIBRARY_INSTANCE, env, args.calls))
        result["instance CPU µs per GET /health"] = {
            name: round(statistics.median(values), 1) for name, values in per_request.items()
        }
    finally:
        if own:
            down(state_dir, purge=True)
    print(json.dumps(result, indent=2))
    hand_pg, lib_pg, hand_redis, lib_redis = (
        r["cpuMicrosecondsPerCall"]  # type: ignore[index]
        for r in list(result.values())[:4]
    )
    whole = result["instance CPU µs per GET /health"]
    print(f"CPU per call, library ÷ hand: postgres {lib_pg / hand_pg:.2f}, "
          f"redis {lib_redis / hand_redis:.2f}, "
          f"whole /health {whole['libraries'] / whole['hand']:.2f}")  # type: ignore[index]  # fmt: skip


if __name__ == "__main__":
    main()
