"""The helper process a long burst is shared with: `python -m koinonia_infra.measure.helper`.

One event loop is one core: against the edge's self-answered path, a burst on one loop measured
a p50 of 1.1-1.6x wrk's at concurrency 8, where wrk runs two threads; the same load over two
processes 0.4-0.6x (docs/verify.md, "The traffic probe"). `measure/share.py` starts this
process and speaks to it in JSON lines; nothing comes in argv.

    parent -> helper (stdin)     {"url", "requests", "workers", "warmup", "timeout", ...}
    helper -> parent (stdout)    {"up": true}          ready: imported, set up
    parent -> helper             go                    both start now
    helper -> parent             {"o": "1101"}         its answers' outcomes, when asked ("report")
    parent -> helper             stop                  (or end of input): stop now
    helper -> parent             {"result": {...}}     its samples and times, then it exits
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from koinonia_infra.measure.client import _Probe, run_load
from koinonia_infra.measure.rounds import Rounds
from koinonia_infra.measure.samples import Sample

REPORT_EVERY = 0.02  # seconds between outcome reports: how late the parent's stop rule may be


def sample_row(s: Sample) -> list[Any]:
    return [s.started, s.latency_ms, s.status, s.upstream, s.error]


def sample_of(row: Sequence[Any]) -> Sample:
    started, latency_ms, status, upstream, error = row
    return Sample(float(started), float(latency_ms), status, upstream, error)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve() -> None:
    reader = await _stdin()
    line = await reader.readline()
    if not line:
        return
    spec = json.loads(line)
    probe = _Probe(
        spec["url"],
        timeout=float(spec["timeout"]),
        max_body_bytes=int(spec["max_body_bytes"]),
        verify_tls=bool(spec["verify_tls"]),
    )
    outcomes: list[str] = []

    def report(_completed: int, _failed: int, recent: Sequence[bool]) -> None:
        outcomes.append("1" if recent[-1] else "0")

    left = spec["deadline_in"]
    deadline = None if left is None else time.monotonic() + float(left)
    rounds = Rounds(probe, int(spec["workers"]), report if spec["report"] else None, deadline)
    _say({"up": True})
    if (await reader.readline()).strip() != b"go":
        await probe.aclose()
        return

    async def listen() -> None:
        await reader.readline()  # "stop", or the end of input: the parent is gone
        rounds.halt("stopped by the process it shares the burst with")

    async def flush() -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY)
            if outcomes:
                _say({"o": "".join(outcomes)})
                outcomes.clear()

    tasks = [asyncio.create_task(listen())]
    if spec["report"]:
        tasks.append(asyncio.create_task(flush()))
    warm: list[Sample] = []
    samples: list[Sample] = []
    t0 = t1 = time.monotonic()
    try:
        if int(spec["warmup"]) > 0:
            warm = await rounds.run(int(spec["warmup"]))
        t0 = time.monotonic()
        if rounds.stopped is None:
            samples = await rounds.run(int(spec["requests"]))
        t1 = time.monotonic()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await probe.aclose()
    if outcomes:
        _say({"o": "".join(outcomes)})
    _say(
        {
            "result": {
                "samples": [sample_row(s) for s in samples],
                "warmup_requests": len(warm),
                "warmup_failed": [sample_row(s) for s in warm if not s.ok],
                "t0": t0,
                "t1": t1,
                "stopped": rounds.stopped,
            }
        }
    )


def main() -> int:
    run_load(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
