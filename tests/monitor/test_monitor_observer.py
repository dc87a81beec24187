"""The sandbox's observer and its routes without a sandbox: log files and /proc of this very
test process, served by the real control plane and read by the real client."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parents[1] / "contract"))
from contract_support import assert_valid  # type: ignore[import-not-found, unused-ignore]

from koinonia_infra.errors import RenderApiError
from koinonia_infra.render_api import RenderClient
from koinonia_infra.sandbox.control_plane import OWNER_ID, Service, create_control_plane
from koinonia_infra.sandbox.observability import Observer, register_observability
from koinonia_infra.sandbox.timing import FAST

TOKEN = "observer-test-token-0123456789"


@dataclass
class FakeProc:
    pid: int
    returncode: int | None = None


@dataclass
class Observed:
    """What the supervisor shows the observer, with this test process as instance 1."""

    logs: Path
    services: dict[str, Service] = field(default_factory=dict)
    children: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    pg_pid: int | None = None
    datastores: Any = None
    timing: Any = FAST

    async def suspend(self, service: Service) -> None: ...
    async def resume(self, service: Service) -> None: ...
    async def restart(self, service: Service) -> None: ...
    async def run_deploy(self, service: Service, deploy: Any, fail: float | None) -> None: ...
    def add_service(self, service: Service) -> None: ...


@dataclass
class Plane:
    observed: Observed
    observer: Observer
    client: RenderClient
    api_1: Service
    api_2: Service


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    (tmp_path / "logs").mkdir()
    observed = Observed(logs=tmp_path / "logs")
    for number in (1, 2):
        svc = Service(id=f"srv-observer000000000{number:03d}", name=f"api-{number}",
                      kind="instance", url="http://127.0.0.1:1", port=1, number=number)  # fmt: skip
        observed.services[svc.id] = svc
    api_1, api_2 = observed.services.values()
    observed.children["api-1"] = FakeProc(os.getpid())
    observed.children["api-2"] = FakeProc(1, returncode=-9)  # gone
    observer = Observer(observed)
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}

    async def start() -> None:
        app = create_control_plane(observed, TOKEN)
        # No sampling loop: each test reads the logs and samples when it means to.
        register_observability(app, observer, sample=False)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        started.update(runner=runner, url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1")

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    client = RenderClient(started["url"], TOKEN)
    try:
        yield Plane(observed, observer, client, api_1, api_2)
    finally:
        client.close()
        asyncio.run_coroutine_threadsafe(started["runner"].cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def write(plane: Plane, number: int, *lines: str) -> None:
    with (plane.observed.logs / f"api-{number}.log").open("a", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


class Window(TypedDict):
    start: datetime
    end: datetime


def window() -> Window:
    now = datetime.now(UTC)
    return {"start": now - timedelta(minutes=10), "end": now + timedelta(seconds=5)}


def test_lines_before_the_observer_started_are_not_this_runs(plane: Plane) -> None:
    write(plane, 1, "ERROR from a previous run")
    plane.observer.start_at_end()
    write(plane, 1, "ERROR payment failed", "INFO all good", "Traceback (most recent call last):")
    plane.observer.read_logs(datetime.now(UTC).timestamp())
    errors = plane.client.list_logs(OWNER_ID, [plane.api_1.id], level=["error"], **window())
    assert [e.message for e in errors] == [
        "ERROR payment failed",
        "Traceback (most recent call last):",
    ]
    assert all(e.resource == plane.api_1.id and e.type == "app" for e in errors)


def test_a_partial_line_waits_for_its_end(plane: Plane) -> None:
    path = plane.observed.logs / "api-1.log"
    path.write_text("ERROR half")
    plane.observer.read_logs(datetime.now(UTC).timestamp())
    assert not plane.client.list_logs(OWNER_ID, [plane.api_1.id], **window())
    with path.open("a") as handle:
        handle.write(" and the rest\n")
    plane.observer.read_logs(datetime.now(UTC).timestamp())
    [entry] = plane.client.list_logs(OWNER_ID, [plane.api_1.id], **window())
    assert entry.message == "ERROR half and the rest"


def test_logs_page_by_time_and_the_client_follows(plane: Plane) -> None:
    base = datetime.now(UTC) - timedelta(seconds=30)
    write(
        plane, 2, *(f"{(base + timedelta(seconds=i)).isoformat()} ERROR job {i}" for i in range(7))
    )
    plane.observer.read_logs(datetime.now(UTC).timestamp())
    entries = plane.client.list_logs(OWNER_ID, [plane.api_2.id], limit=3, **window())
    assert [e.message.split()[-1] for e in entries] == [str(i) for i in range(7)]
    assert entries[0].timestamp == base  # the line's own time, not when it was read
    raw = plane.client._http.get(
        "logs",
        params={"ownerId": OWNER_ID, "resource": plane.api_2.id, "limit": 3},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()
    assert_valid("logs", raw)
    assert raw["hasMore"] is True
    assert [e["message"].split()[-1] for e in raw["logs"]] == ["6", "5", "4"]  # backward

    # A time far from the read time is another clock's: the read time stands in.
    write(plane, 2, "2001-01-01T00:00:00 ERROR from a naive local clock")
    plane.observer.read_logs(datetime.now(UTC).timestamp())
    [late] = [e for e in plane.client.list_logs(OWNER_ID, [plane.api_2.id], limit=100, **window())
              if "naive" in e.message]  # fmt: skip
    assert abs((late.timestamp - datetime.now(UTC)).total_seconds()) < 60


def test_request_lines_make_the_http_metrics(plane: Plane) -> None:
    now = datetime.now(UTC)
    lines = [
        json.dumps({"time": now.isoformat(), "type": "request", "method": "GET", "path": "/",
                    "status": status, "ms": ms})
        for status, ms in [(200, 10.0)] * 18 + [(503, 900.0), (200, 20.0)]
    ]  # fmt: skip
    write(plane, 1, *lines)
    plane.observer.read_logs(now.timestamp())
    requests = plane.client.metrics("http-requests", [plane.api_1.id], aggregateBy="statusCode",
                                    **window())  # fmt: skip
    counts = {s.label("statusCode"): sum(p.value for p in s.values) for s in requests}
    assert counts == {"200": 19, "503": 1}
    latency = plane.client.metrics("http-latency", [plane.api_1.id], quantile=[0.5, 0.95, 1],
                                   **window())  # fmt: skip
    by_q = {s.label("quantile"): s.values[-1].value for s in latency}
    assert by_q == {"0.5": 10.0, "0.95": 20.0, "1": 900.0}
    logs = plane.client.list_logs(OWNER_ID, [plane.api_1.id], types=["request"], limit=100,
                                  **window())  # fmt: skip
    assert len(logs) == 20
    assert logs[18].label("statusCode") == "503"


def test_cpu_memory_and_instance_count_are_this_process(plane: Plane) -> None:
    plane.observer.tick()
    deadline = datetime.now(UTC) + timedelta(seconds=0.3)
    while datetime.now(UTC) < deadline:
        sum(range(10_000))  # some CPU for the next sample to see
    plane.observer.tick()
    cpu = {s.resource: s for s in plane.client.metrics("cpu", [plane.api_1.id], **window())}
    assert cpu[plane.api_1.id].values[-1].value > 0.05
    memory = plane.client.metrics("memory", [plane.api_1.id, plane.api_2.id], **window())
    rss = {s.resource: s.values[-1].value for s in memory}
    assert rss[plane.api_1.id] > 10 * 1024 * 1024
    assert rss[plane.api_2.id] == 0
    count = plane.client.metrics("instance-count", [plane.api_1.id, plane.api_2.id], **window())
    assert {s.resource: s.values[-1].value for s in count} == {plane.api_1.id: 1, plane.api_2.id: 0}
    limits = plane.client.metrics("cpu-limit", [plane.api_1.id], **window())
    assert limits[0].values[0].value == 1.0  # a standard instance: 1 CPU


def test_events_list_newest_first_with_the_specs_shape(plane: Plane) -> None:
    plane.observer.event(plane.api_2.id, "server_failed", {"reason": {"evicted": False}})
    plane.observer.event(plane.api_2.id, "server_restarted", {"triggeredByUser": None})
    events = plane.client.list_events(plane.api_2.id, **window())
    assert [e.type for e in events] == ["server_restarted", "server_failed"]
    only = plane.client.list_events(plane.api_2.id, types=["server_failed"], **window())
    assert [e.type for e in only] == ["server_failed"]
    with pytest.raises(RenderApiError, match="not found"):
        plane.client.list_events("srv-nosuchservice0000000", **window())


def test_the_specs_limits_are_enforced(plane: Plane) -> None:
    with pytest.raises(RenderApiError, match="resolutionSeconds must be at least 30"):
        plane.client._get_json("/metrics/cpu", resource=plane.api_1.id, resolutionSeconds=10)
    with pytest.raises(RenderApiError, match="ownerId is required"):
        plane.client._get_json("/logs", resource=plane.api_1.id)
