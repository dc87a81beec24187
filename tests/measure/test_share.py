"""A burst shared with a helper process (measure/share.py, measure/helper.py), against a real
local server: every request answered once, the stop rule and the deadline kept across both
processes, and no helper left behind whatever happens."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

import pytest
from framing_server import FramingServer, url_of

from koinonia_infra.measure import share
from koinonia_infra.measure.client import run_load
from koinonia_infra.measure.load import BurstResult, burst_async


def _shared(url: str, requests: int, concurrency: int, **kw: object) -> BurstResult:
    return run_load(burst_async(url, requests, concurrency, processes=2, **kw))  # type: ignore[arg-type]


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> list[share.Helper]:
    """Every helper started, to check that none outlives its burst."""
    started: list[share.Helper] = []
    real = share.Helper.start

    async def recording(*args: object, **kw: object) -> share.Helper | None:
        helper = await real(*args, **kw)  # type: ignore[arg-type]
        if helper is not None:
            started.append(helper)
        return helper

    monkeypatch.setattr(share.Helper, "start", recording)
    return started


def test_every_request_is_answered_once_over_both_processes(
    server: FramingServer, helpers: list[share.Helper]
) -> None:
    result = _shared(url_of(server, "/chunked"), 400, 4, warmup=8)
    assert len(helpers) == 1
    assert helpers[0].proc.returncode == 0
    assert len(result.samples) == 400
    assert all(s.ok and s.upstream == "api-a:1" for s in result.samples)
    assert result.warmup_requests == 8
    assert result.concurrency == 4
    assert result.stopped is None
    assert result.processes == 2
    # 4 workers, each on its own connection, 2 of them in the helper.
    assert server.connections == 4
    assert server.requests["/chunked"] == 408
    starts = [s.started for s in result.samples]
    assert starts == sorted(starts)
    assert result.elapsed_s > 0


def test_the_stop_rule_counts_the_helpers_answers(
    server: FramingServer, helpers: list[share.Helper]
) -> None:
    def after_2500_failures(completed: int, failed: int, _recent: Sequence[bool]) -> str | None:
        return "failing" if failed >= 2500 else None

    # This process sends 2,000 of the 4,000 requests: only with the helper's can 2,500 fail.
    result = _shared(url_of(server, "/fail"), 4000, 4, stop_when=after_2500_failures)
    assert result.stopped == "failing"
    assert len(helpers) == 1
    assert all(s.status == 500 for s in result.samples)


def test_a_rule_that_fires_stops_the_helper_too(
    server: FramingServer, helpers: list[share.Helper]
) -> None:
    def after_100_failures(completed: int, failed: int, _recent: Sequence[bool]) -> str | None:
        return "failing" if failed >= 100 else None

    result = _shared(url_of(server, "/fail"), 200_000, 4, stop_when=after_100_failures)
    assert result.stopped == "failing"
    # Each process had 100,000 to send: both ended on the stop, long before.
    assert len(result.samples) < 100_000
    assert helpers[0].proc.returncode == 0


def test_both_processes_keep_the_deadline(
    server: FramingServer, helpers: list[share.Helper]
) -> None:
    t0 = time.monotonic()
    result = _shared(url_of(server, "/stall"), 10_000, 4, deadline=t0 + 1.5, timeout=60.0)
    assert time.monotonic() - t0 < 15
    assert result.stopped == "deadline reached"
    assert result.samples == []
    assert helpers[0].proc.returncode is not None


def test_a_helper_that_will_not_start_leaves_the_whole_burst_here(
    server: FramingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(share, "COMMAND", (sys.executable, "-c", "import sys; sys.exit(3)"))
    result = _shared(url_of(server, "/length"), 300, 4)
    assert len(result.samples) == 300
    assert all(s.ok for s in result.samples)
    assert result.stopped is None
    assert result.processes == 1
    assert server.connections == 4


def test_a_helper_that_dies_during_the_burst_is_named_in_the_result(
    server: FramingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dies = (
        "import sys; sys.stdin.readline(); print('{\"up\": true}', flush=True); "
        "sys.stdin.readline(); print('helper crashed', file=sys.stderr); sys.exit(4)"
    )
    monkeypatch.setattr(share, "COMMAND", (sys.executable, "-c", dies))
    result = _shared(url_of(server, "/length"), 300, 4)
    # Its share is missing and the result says why; this process's share is all there.
    assert result.stopped == "the load's helper process failed: helper crashed"
    assert len(result.samples) == 150
    assert all(s.ok for s in result.samples)


def test_a_cancelled_burst_ends_its_helper(
    server: FramingServer, helpers: list[share.Helper]
) -> None:
    async def cancelled() -> None:
        task = asyncio.create_task(
            burst_async(url_of(server, "/stall"), 10_000, 4, processes=2, timeout=60.0)
        )
        while not helpers:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_load(cancelled())
    assert helpers[0].proc.returncode is not None


def test_a_short_burst_is_not_shared(server: FramingServer) -> None:
    assert not share.worth_sharing(share.MIN_SHARED_REQUESTS - 1, 32)
    assert not share.worth_sharing(100_000, 1)
    result = run_load(burst_async(url_of(server, "/length"), 200, 4))
    assert (len(result.samples), result.processes) == (200, 1)


def test_a_bad_url_is_a_usage_error_before_any_helper_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from koinonia_infra.errors import UsageError

    async def no_helper(*_args: object, **_kw: object) -> None:
        raise AssertionError("a helper was started for a URL that cannot be used")

    monkeypatch.setattr(share.Helper, "start", no_helper)
    with pytest.raises(UsageError, match="not an http"):
        run_load(burst_async("ftp://example.invalid/", 10_000, 4, processes=2))
