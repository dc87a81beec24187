"""The edge in front of real instances under faults, with real Caddy and steady traffic: a hung
instance, a killed one, and an application route answering 5xx."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from koinonia_infra.caddy import UPSTREAM_HEADER

pytestmark = pytest.mark.integration


def _wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _address(sandbox: Any, number: int) -> str:
    inst = next(i for i in sandbox.descriptor.instances if i.number == number)
    return str(inst.url).removeprefix("http://")


def test_a_hung_instance_is_routed_around_without_a_failed_request(
    sandbox: Any, traffic_through_edge: Any
) -> None:
    # SIGSTOP: the instance's socket still accepts connections (as a blocked event loop or a
    # stuck pool would), but nothing ever answers. The traffic's clients give up after 10 s,
    # so a request the edge left waiting on the hung instance counts as failed.
    pid = sandbox.pid("api-1")
    hung, healthy = _address(sandbox, 1), _address(sandbox, 2)
    with traffic_through_edge(sandbox.edge_url, workers=4) as traffic:
        _wait_for(lambda: traffic.upstreams[hung] > 5 and traffic.upstreams[healthy] > 5, 20,
                  "traffic on both instances")  # fmt: skip
        os.kill(pid, signal.SIGSTOP)
        try:
            # Long enough for requests caught on the hung instance to time out and be retried,
            # and for the active check to take it out of rotation.
            _wait_for(lambda: traffic.total > 0, 1, "traffic")
            time.sleep(6)
            with traffic.lock:
                traffic.upstreams.clear()
            before = traffic.total
            _wait_for(lambda: traffic.total > before + 40, 20, "traffic while api-1 is hung")
            with traffic.lock:
                during = dict(traffic.upstreams)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert traffic.failed == [], f"edge failed {len(traffic.failed)} of {traffic.total}"
    assert set(during) == {healthy}, during


def test_a_killed_instance_under_load_costs_no_request(
    sandbox: Any, traffic_through_edge: Any
) -> None:
    dead, alive = _address(sandbox, 1), _address(sandbox, 2)
    with traffic_through_edge(sandbox.edge_url, workers=4) as traffic:
        _wait_for(lambda: traffic.upstreams[dead] > 5, 20, "traffic on api-1")
        sandbox.kill("api-1")
        before = traffic.total
        _wait_for(lambda: traffic.total > before + 100, 30, "traffic after the kill")
    assert traffic.failed == [], f"edge failed {len(traffic.failed)} of {traffic.total}"
    assert traffic.upstreams[alive] > 0


def test_an_endpoint_answering_500_ejects_no_instance_and_stalls_no_other_route(
    sandbox: Any, traffic_through_edge: Any
) -> None:
    # One buggy route hammered (what a passive `unhealthy_status 5xx` check would count against
    # the instances): its 500s reach the client as the application's answer, and every other
    # route keeps being served by both instances.
    instances = {_address(sandbox, 1), _address(sandbox, 2)}
    statuses: Counter[int] = Counter()
    answered_by: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=sandbox.edge_url, timeout=10) as client:
            while not stop.is_set():
                try:
                    resp = client.get("/_sandbox/status/500")
                except httpx.TransportError as exc:
                    with lock:
                        statuses[-1] += 1
                    print(f"hammer: {exc!r}")
                    continue
                with lock:
                    statuses[resp.status_code] += 1
                    answered_by[resp.headers.get(UPSTREAM_HEADER, "?")] += 1

    with traffic_through_edge(sandbox.edge_url, workers=3) as traffic:
        _wait_for(lambda: traffic.ok > 10, 20, "traffic")
        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            _wait_for(lambda: sum(statuses.values()) > 150, 30, "500s through the edge")
            with traffic.lock:
                traffic.upstreams.clear()
            before = traffic.total
            _wait_for(lambda: traffic.total > before + 100, 30, "traffic during the 500s")
            with traffic.lock:
                during = dict(traffic.upstreams)
        finally:
            stop.set()
            for thread in threads:
                thread.join(15)
    assert set(statuses) == {500}, statuses
    assert set(answered_by) == instances, answered_by
    assert traffic.failed == [], f"edge failed {len(traffic.failed)} of {traffic.total}"
    assert set(during) == instances, during
