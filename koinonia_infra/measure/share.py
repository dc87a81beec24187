"""A long burst shared by this process and a helper process, one event loop on each core, as wrk
shares its load between threads.

Helper.start(...) -> Helper | None      None when the helper could not start (the caller then
                                        runs the whole burst itself)
    .go()   .stop()   await .finish() -> HelperResult

The helper runs the same rounds on its own share of the workers and requests
(`measure/helper.py`). The burst's stop rule stays with the caller: the helper reports its
answers' outcomes every 20 ms when there is a rule, and is told to stop when it fires; both keep
the same deadline. Its samples come back on the same clock (time.monotonic() is system-wide:
CLOCK_MONOTONIC, mach_absolute_time, QueryPerformanceCounter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from koinonia_infra.measure.helper import sample_of
from koinonia_infra.measure.samples import Sample

# Below this many requests a burst stays in one process: starting the helper (an interpreter and
# the client's imports) takes 0.2-0.4 s, longer than such a burst.
MIN_SHARED_REQUESTS = 5_000
START_TIMEOUT = 20.0
# The helper's command; tests replace it to see a helper that will not start.
COMMAND: tuple[str, ...] = (sys.executable, "-m", "koinonia_infra.measure.helper")


def worth_sharing(requests: int, workers: int) -> bool:
    return workers >= 2 and requests >= MIN_SHARED_REQUESTS and (os.cpu_count() or 1) >= 2


@dataclass(frozen=True, slots=True)
class HelperResult:
    samples: list[Sample]
    warmup_requests: int
    warmup_failed: list[Sample]
    started: float  # when its measured requests began (time.monotonic())
    ended: float
    stopped: str | None  # why it ended early, in its words or ours


class Helper:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.on_outcomes: Callable[[str], None] | None = None
        self.result: dict[str, Any] | None = None
        self.errors = bytearray()
        self.reading: asyncio.Task[None] | None = None
        self.draining = asyncio.create_task(self._drain())

    @classmethod
    async def start(
        cls,
        url: str,
        *,
        requests: int,
        workers: int,
        warmup: int,
        timeout: float,
        max_body_bytes: int,
        verify_tls: bool,
        report: bool,
        deadline: float | None,
    ) -> Helper | None:
        """A helper set up for its share and waiting for `go`, or None (nothing left running)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *COMMAND,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=1 << 30,  # its result is one line: about 60 bytes a sample
            )
        except OSError:
            return None
        helper = cls(proc)
        spec = {
            "url": url,
            "requests": requests,
            "workers": workers,
            "warmup": warmup,
            "timeout": timeout,
            "max_body_bytes": max_body_bytes,
            "verify_tls": verify_tls,
            "report": report,
            "deadline_in": None if deadline is None else max(0.0, deadline - time.monotonic()),
        }
        try:
            up = await helper._handshake(json.dumps(spec) + "\n")
        except BaseException:
            await helper.kill()
            raise
        if not up:
            await helper.kill()
            return None
        return helper

    async def _handshake(self, spec: str) -> bool:
        """Send the spec; whether it answered `up` in time."""
        assert self.proc.stdout is not None
        try:
            self._write(spec)
            async with asyncio.timeout(START_TIMEOUT):
                line = await self.proc.stdout.readline()
            return bool(json.loads(line or b"null") == {"up": True})
        except (OSError, ValueError, TimeoutError):
            return False

    def _write(self, text: str) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(text.encode())

    async def _drain(self) -> None:
        # Kept small: only its last words matter, and an unread pipe would stall it.
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self.errors += chunk
            del self.errors[:-2048]

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            if "o" in message and self.on_outcomes is not None:
                self.on_outcomes(str(message["o"]))
            elif "result" in message:
                self.result = message["result"]

    def go(self) -> None:
        self._write("go\n")
        self.reading = asyncio.create_task(self._read())

    def stop(self, _reason: str = "") -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self._write("stop\n")

    async def finish(self, timeout: float | None) -> HelperResult:
        """Its result, waiting at most `timeout` seconds (None: as long as it takes) for it to
        end its requests."""
        failure = None
        try:
            async with asyncio.timeout(timeout):
                if self.reading is not None:
                    await self.reading
                await self.proc.wait()
        except (TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
            failure = type(exc).__name__
        finally:
            await self.kill()
        if self.result is None:
            last = " ".join(self.errors.decode(errors="replace").split())[-200:]
            why = last or failure or f"exit code {self.proc.returncode}"
            now = time.monotonic()
            return HelperResult([], 0, [], now, now, f"the load's helper process failed: {why}")
        r = self.result
        return HelperResult(
            samples=[sample_of(row) for row in r["samples"]],
            warmup_requests=int(r["warmup_requests"]),
            warmup_failed=[sample_of(row) for row in r["warmup_failed"]],
            started=float(r["t0"]),
            ended=float(r["t1"]),
            stopped=r["stopped"],
        )

    async def kill(self) -> None:
        """End the helper, whatever it is doing; safe to call twice."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(Exception):
            await self.proc.wait()
        for task in (self.reading, self.draining):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(
            *(t for t in (self.reading, self.draining) if t is not None), return_exceptions=True
        )
