"""A burst's engine: workers on keep-alive connections, each sending its next request from the
callback that receives its answer, stoppable by a rule or a deadline.

Rounds(probe, workers, stop_when, deadline).run(count) -> the samples of `count` requests
    `run` may be called again (the warm-up, then the measured requests) on the same connections.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence

from koinonia_infra.measure.client import Answered, _Conn, _Probe
from koinonia_infra.measure.reasons import ConnectionClosed
from koinonia_infra.measure.samples import Sample

# (answers so far, failed so far, the outcomes of the last answers, newest last, at most 256)
# -> why to stop now, or None.
StopRule = Callable[[int, int, Sequence[bool]], str | None]


class Worker:
    """One of a burst's workers: one keep-alive connection, one request at a time. Its next
    request is sent from the callback that receives the previous answer, in the same loop turn
    (wrk's design): no task to wake and no future per request, which held the client to about
    60% of wrk's rate against a target faster than it (docs/verify.md, "The traffic probe")."""

    def __init__(self, rounds: Rounds) -> None:
        self.rounds = rounds
        self.conn: _Conn | None = None
        self.started = 0.0
        self.reused = False
        self.retried = False
        self.on_answer: Answered = self._answered  # bound once, not once per request

    def next(self) -> None:
        """Send the next request, or retire when there is none left."""
        rounds = self.rounds
        if rounds.left <= 0 or rounds.halted:
            rounds.retire()
            return
        rounds.left -= 1
        self.started = time.monotonic()
        self.retried = False
        self._send()

    def _send(self) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            self.conn = None
            self.rounds.open_for(self)
            return
        self.reused = True
        self._request(conn)

    def opened(self, conn: _Conn) -> None:
        self.conn = conn
        self.reused = False
        self._request(conn)

    def _request(self, conn: _Conn) -> None:
        probe = self.rounds.probe
        self.rounds.lean.send(conn, probe.payload, self.started + probe.timeout, self.on_answer)

    def _answered(self, conn: _Conn, exc: BaseException | None) -> None:
        if self.rounds.halted:
            return  # an answer to a request the burst has abandoned
        try:
            sample = self._sample(conn, exc)
        except BaseException as error:  # see settle
            self.rounds.crash(error)
            return
        if sample is not None:
            self.settle(sample)

    def _sample(self, conn: _Conn, exc: BaseException | None) -> Sample | None:
        """The request's sample; None when it was sent again (a stale kept connection)."""
        probe = self.rounds.probe
        if exc is None:
            sample = probe.answered(self.started, conn)
            if not conn.keep_alive or conn.closed:
                conn.abort()
                self.conn = None
        else:
            conn.abort()
            self.conn = None
            # A kept connection the server closed while idle fails before any byte arrives:
            # the client's doing, so it is retried once on a fresh one (as LeanClient.exchange).
            stale = isinstance(exc, ConnectionClosed) and self.reused and not exc.got_bytes
            if stale and not self.retried:
                self.retried = True
                self._send()
                return None
            sample = probe.failed(self.started, exc)
        return sample

    def settle(self, sample: Sample) -> None:
        """Count `sample`, then send the next request. Called from the event loop's callbacks,
        where an exception would be logged and lost: one ends the burst with it instead."""
        try:
            self.rounds.record(sample)
            self.next()
        except BaseException as error:
            self.rounds.crash(error)


class Rounds:
    """Requests through one `_Probe` by `workers` workers, stoppable by a rule or a deadline."""

    def __init__(
        self, probe: _Probe, workers: int, stop_when: StopRule | None, deadline: float | None
    ) -> None:
        self.probe = probe
        self.lean = probe.lean
        self.workers = [Worker(self) for _ in range(workers)]
        self.stop_when = stop_when
        self.deadline = deadline
        self.stopped: str | None = None
        self.halted = False
        self.completed = 0
        self.failed = 0
        self.recent: collections.deque[bool] = collections.deque(maxlen=256)
        self.left = 0
        self.active = 0
        self.done: list[Sample] = []
        self.finished: asyncio.Future[None] | None = None
        self.opening: set[asyncio.Task[None]] = set()
        # Told why, once, when the burst stops (a process sharing the burst is told to stop).
        self.on_stop: Callable[[str], None] | None = None

    def record(self, sample: Sample) -> None:
        self.done.append(sample)
        if self.stop_when is None:
            return
        ok = sample.ok
        self.completed += 1
        self.failed += not ok
        self.recent.append(ok)
        self._ask(self.stop_when)

    def merge(self, outcomes: str) -> None:
        """Count answers another process's rounds got ("1" ok, "0" failed, oldest first) as this
        burst's own, then ask the stop rule once."""
        if self.stop_when is None or not outcomes:
            return
        failed = outcomes.count("0")
        self.completed += len(outcomes)
        self.failed += failed
        self.recent.extend(c == "1" for c in outcomes[-256:])
        self._ask(self.stop_when)

    def _ask(self, stop_when: StopRule) -> None:
        if self.stopped is None:
            reason = stop_when(self.completed, self.failed, self.recent)
            if reason is not None:
                self.halt(reason)

    def halt(self, reason: str) -> None:
        """Stop now: no request is sent after this, and those in flight are dropped."""
        if self.stopped is None:
            self.stopped = reason
            if self.on_stop is not None:
                self.on_stop(reason)
        self.halted = True
        self._end()

    def retire(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._end()

    def crash(self, error: BaseException) -> None:
        self.halted = True
        if self.finished is not None and not self.finished.done():
            self.finished.set_exception(error)

    def _end(self) -> None:
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    def open_for(self, worker: Worker) -> None:
        task = asyncio.get_running_loop().create_task(self._open(worker))
        self.opening.add(task)
        task.add_done_callback(self.opening.discard)

    async def _open(self, worker: Worker) -> None:
        started = worker.started
        try:
            remaining = max(0.0, started + self.probe.timeout - time.monotonic())
            async with asyncio.timeout(remaining):
                conn = await self.lean.connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed connect is a sample, never an escape
            if not self.halted:
                worker.settle(self.probe.failed(started, exc))
            return
        if self.halted:
            conn.abort()
            return
        worker.opened(conn)

    async def run(self, count: int) -> list[Sample]:
        self.done = []
        self.left = count
        workers = self.workers[: min(len(self.workers), count)]
        if not workers:
            return self.done
        self.finished = asyncio.get_running_loop().create_future()
        self.active = len(workers)
        remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            for worker in workers:
                worker.next()
            async with asyncio.timeout(remaining):
                await self.finished
        except TimeoutError:
            if self.stopped is None:
                self.stopped = "deadline reached"
        finally:
            if self.active > 0 or self.halted:
                # Stopped, out of time or cancelled: what is in flight is abandoned, in no sample.
                self.halted = True
                for worker in self.workers:
                    if worker.conn is not None:
                        worker.conn.abort()
                        worker.conn = None
                for task in list(self.opening):
                    task.cancel()
                await asyncio.gather(*self.opening, return_exceptions=True)
        return self.done
