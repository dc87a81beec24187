"""Helpers for the sandbox tests: steady traffic through the edge while something happens."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest


@dataclass
class Traffic:
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    upstreams: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return self.ok + len(self.failed)


@contextmanager
def edge_traffic(url: str, workers: int = 4, max_seconds: float = 60.0) -> Iterator[Traffic]:
    """GET / on `url` (the edge, or an instance) from `workers` keep-alive clients until the
    block ends; a `Connection: close` answer is honoured like any HTTP client does."""
    parts = urlsplit(url)
    traffic = Traffic()
    stop = threading.Event()
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                if resp.will_close:
                    conn.close()
                with traffic.lock:
                    if resp.status == 200:
                        traffic.ok += 1
                        traffic.upstreams[resp.getheader("X-Koinonia-Upstream", "?")] += 1
                    else:
                        traffic.failed.append(f"HTTP {resp.status}")
            except (OSError, http.client.HTTPException) as exc:
                with traffic.lock:
                    traffic.failed.append(type(exc).__name__)
                conn.close()
            time.sleep(0.005)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield traffic
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


@pytest.fixture
def api(sandbox: Any) -> Iterator[httpx.Client]:
    """An httpx client on the control plane, authenticated with the sandbox's token."""
    with httpx.Client(base_url=sandbox.api_url, headers=sandbox.auth_headers, timeout=10) as c:
        yield c


@pytest.fixture
def traffic_through_edge() -> Any:
    """`with traffic_through_edge(url) as t:` — see edge_traffic."""
    return edge_traffic
