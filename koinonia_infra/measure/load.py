"""Load: a burst of N requests, or a steady rate until stopped, through the lean client.

burst(url, requests=200, concurrency=16, *, timeout=5.0, warmup=0) -> BurstResult
    N GETs at bounded concurrency (one keep-alive connection per worker, like wrk).
SteadyTraffic(url, rate=200.0, *, timeout=5.0, max_in_flight=256)
    .start(); ... .samples() (a snapshot, any time); .stop() -> SteadyResult
    A fixed request rate on its own event loop in a background thread. Sends are scheduled by
    the monotonic clock (send i at t0 + i/rate); a send made more than `late_after` behind
    schedule is counted as late, one that could not be made (in-flight cap reached, or more
    than `catch_up_seconds` behind) as missed, so the generator never falls behind silently.
    Each request stands on its own: a failure is counted from its own sample, never inferred
    from the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass

from koinonia_infra.errors import UsageError
from koinonia_infra.measure.client import (
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT,
    _Probe,
    _Target,
    run_load,
)
from koinonia_infra.measure.rounds import Rounds, StopRule
from koinonia_infra.measure.samples import Sample
from koinonia_infra.measure.share import Helper, worth_sharing


@dataclass(frozen=True, slots=True)
class BurstResult:
    url: str
    samples: list[Sample]
    elapsed_s: float
    concurrency: int
    # Requests sent before measuring, to open every connection; their failures still count.
    warmup_requests: int = 0
    warmup_failures: int = 0
    # Why the burst ended before every request was sent (`stop_when` or the deadline), else None.
    # Requests in flight at that moment were abandoned: they are in no sample.
    stopped: str | None = None
    planned: int = 0
    # The warm-up requests that failed, so their reasons are reported like the others'.
    warmup_failed: tuple[Sample, ...] = ()
    # 2 when the burst was shared with a helper process (measure/share.py).
    processes: int = 1

    @property
    def requests_per_second(self) -> float:
        return len(self.samples) / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class SteadyResult:
    url: str
    target_rate: float
    samples: list[Sample]
    started: float
    stopped: float
    scheduled: int
    sent: int
    late: int
    missed: int

    @property
    def duration_s(self) -> float:
        return max(self.stopped - self.started, 0.0)

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if not s.ok)


async def burst_async(
    url: str,
    requests: int,
    concurrency: int,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    verify_tls: bool = True,
    warmup: int = 0,
    stop_when: StopRule | None = None,
    deadline: float | None = None,
    processes: int | None = None,
) -> BurstResult:
    """`requests` GETs, `concurrency` workers each on its own keep-alive connection.

    With `warmup`, that many requests go first and are left out of the samples, so latency
    measures connections in use rather than their opening (TCP, TLS, the edge's own upstream
    connections); their failures are counted in `warmup_failures`, never hidden.

    `stop_when(completed, failed, recent_ok)` is asked after every answer (warm-up included;
    `recent_ok` holds the outcomes of the last answers, newest last, at most 256); a reason it
    returns ends the burst at once, and so does `deadline` (time.monotonic()). The requests in
    flight then are abandoned, so a failing deployment costs seconds, not `requests /
    concurrency` times the timeout.

    `processes=2` shares the workers and requests with a helper process (`measure/share.py`);
    its answers reach `stop_when` in batches, every 20 ms. None: shared when the burst is long
    enough to pay for starting the helper (`share.worth_sharing`) and there are two cores.
    """
    if requests < 1 or concurrency < 1:
        raise UsageError("requests and concurrency must be at least 1")
    if processes not in (None, 1, 2):
        raise UsageError(f"processes {processes}: must be 1 or 2")
    workers = min(concurrency, requests)
    # First: a bad URL is a usage error before any helper process is started.
    client = _Probe(
        url,
        timeout=timeout,
        max_body_bytes=max_body_bytes,
        verify_tls=verify_tls,
    )
    mine, my_requests, my_warmup = workers, requests, max(warmup, 0)
    helper = None
    if processes == 2 or (processes is None and worth_sharing(requests, workers)):
        theirs = (workers // 2, requests * (workers // 2) // workers, my_warmup // 2)
        helper = await _start_helper(
            url,
            theirs,
            timeout=timeout,
            max_body_bytes=max_body_bytes,
            verify_tls=verify_tls,
            stop_when=stop_when,
            deadline=deadline,
        )
        if helper is not None:
            mine, my_requests, my_warmup = (
                m - t for m, t in zip((mine, my_requests, my_warmup), theirs, strict=True)
            )
    rounds = Rounds(client, mine, stop_when, deadline)
    warm: list[Sample] = []
    samples: list[Sample] = []
    warm_count = 0
    try:
        if helper is not None:
            rounds.on_stop = helper.stop
            helper.on_outcomes = rounds.merge
            helper.go()
        if my_warmup > 0:
            warm = await rounds.run(my_warmup)
        t0 = time.monotonic()
        if rounds.stopped is None:
            samples = await rounds.run(my_requests)
        t1 = time.monotonic()
        warm_count = len(warm)
        warm = [s for s in warm if not s.ok]
        stopped = rounds.stopped
        if helper is not None:
            # Its share ends like this one's: done, stopped, or by the deadline (plus the last
            # requests' timeout); without a deadline, when its requests are done.
            wait = None if deadline is None else deadline - time.monotonic() + timeout + 10.0
            shared = await helper.finish(None if wait is None else max(wait, 1.0))
            samples += shared.samples
            warm_count += shared.warmup_requests
            warm += shared.warmup_failed  # only its failed warm-up requests come back
            t0, t1 = min(t0, shared.started), max(t1, shared.ended)
            # The rule may have fired on its last answers, after this process had finished.
            stopped = rounds.stopped or shared.stopped
    finally:
        await client.aclose()
        if helper is not None:
            await helper.kill()
    samples.sort(key=lambda s: s.started)
    return BurstResult(
        url=url,
        samples=samples,
        elapsed_s=t1 - t0,
        concurrency=workers,
        warmup_requests=warm_count,
        warmup_failures=len(warm),
        stopped=stopped,
        planned=requests + max(warmup, 0),
        warmup_failed=tuple(warm),
        processes=1 if helper is None else 2,
    )


async def _start_helper(
    url: str,
    share: tuple[int, int, int],
    *,
    timeout: float,
    max_body_bytes: int,
    verify_tls: bool,
    stop_when: StopRule | None,
    deadline: float | None,
) -> Helper | None:
    """A helper process for `share` (workers, requests, warm-up), or None."""
    workers, requests, warmup = share
    if workers < 1 or requests < 1:
        return None
    return await Helper.start(
        url,
        workers=workers,
        requests=requests,
        warmup=warmup,
        timeout=timeout,
        max_body_bytes=max_body_bytes,
        verify_tls=verify_tls,
        report=stop_when is not None,
        deadline=deadline,
    )


def burst(
    url: str,
    requests: int = 200,
    concurrency: int = 16,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    verify_tls: bool = True,
    warmup: int = 0,
) -> BurstResult:
    """Synchronous `burst_async` (runs its own event loop)."""
    return run_load(
        burst_async(
            url,
            requests,
            concurrency,
            timeout=timeout,
            max_body_bytes=max_body_bytes,
            verify_tls=verify_tls,
            warmup=warmup,
        )
    )


# ------------------------------------------------------------------------------------------------
# Steady rate
# ------------------------------------------------------------------------------------------------


@dataclass
class _SteadyCounters:
    scheduled: int = 0
    sent: int = 0
    late: int = 0
    missed: int = 0
    in_flight: int = 0
    started: float = 0.0
    stopped: float = 0.0


class SteadyTraffic:
    """A fixed request rate to one URL until `stop()`; usable from synchronous code.

    traffic = SteadyTraffic(edge_url + "/health", rate=200)
    traffic.start()
    ...                       # suspend, resume, watch traffic.samples()
    result = traffic.stop()   # waits for in-flight requests (bounded by the timeout)
    """

    def __init__(
        self,
        url: str,
        rate: float = 200.0,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = 256,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        late_after: float = 0.010,
        catch_up_seconds: float = 1.0,
        verify_tls: bool = True,
    ) -> None:
        if rate <= 0 or rate > 100_000:
            raise UsageError(f"rate {rate:g} req/s: must be in (0, 100000]")
        _Target.parse(url)  # a bad URL is a usage error now, not a thread failure later
        self.url = url
        self.rate = rate
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_body = max_body_bytes
        self.late_after = late_after
        self.catch_up = catch_up_seconds
        self.verify_tls = verify_tls
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._counters = _SteadyCounters()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._result: SteadyResult | None = None

    # public -----------------------------------------------------------------------------------
    def start(self) -> SteadyTraffic:
        if self._thread is not None:
            raise RuntimeError("SteadyTraffic already started")
        self._thread = threading.Thread(target=self._run, name="koinonia-traffic", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def samples(self) -> list[Sample]:
        """A snapshot of the samples so far (completed requests, in completion order)."""
        with self._lock:
            return list(self._samples)

    def stop(self) -> SteadyResult:
        """Stop sending, wait for in-flight requests (at most the timeout), return everything."""
        if self._result is not None:
            return self._result
        if self._thread is None:
            raise RuntimeError("SteadyTraffic was never started")
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            # The loop may close between the check and the call: the thread ended on its own.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=self.timeout + 10)
        c = self._counters
        with self._lock:
            samples = sorted(self._samples, key=lambda s: s.started)
        self._result = SteadyResult(
            url=self.url,
            target_rate=self.rate,
            samples=samples,
            started=c.started,
            stopped=c.stopped or time.monotonic(),
            scheduled=c.scheduled,
            sent=c.sent,
            late=c.late,
            missed=c.missed,
        )
        return self._result

    def __enter__(self) -> SteadyTraffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            run_load(self._main())
        except BaseException as exc:  # kept for the caller, never lost with the thread
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = _Probe(
            self.url,
            timeout=self.timeout,
            max_body_bytes=self.max_body,
            verify_tls=self.verify_tls,
        )
        c = self._counters
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.rate

        async def one() -> None:
            try:
                sample = await client.get()
                with self._lock:
                    self._samples.append(sample)
            finally:
                c.in_flight -= 1

        c.started = time.monotonic()
        self._ready.set()
        try:
            while not self._stop.is_set():
                due = c.started + c.scheduled * interval
                now = time.monotonic()
                if due > now:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=due - now)
                    continue
                # Everything due now is sent now; what is hopelessly behind is counted, not sent.
                while due <= now and not self._stop.is_set():
                    c.scheduled += 1
                    behind = now - due
                    if behind > self.catch_up or c.in_flight >= self.max_in_flight:
                        c.missed += 1
                    else:
                        if behind > self.late_after:
                            c.late += 1
                        c.sent += 1
                        c.in_flight += 1
                        task = asyncio.create_task(one())
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    due = c.started + c.scheduled * interval
                # Yield so the responses that arrived meanwhile are processed.
                await asyncio.sleep(0)
            c.stopped = time.monotonic()
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout + 1)
        finally:
            if not c.stopped:
                c.stopped = time.monotonic()
            for task in tasks:
                task.cancel()
            await client.aclose()
