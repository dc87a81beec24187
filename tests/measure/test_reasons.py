"""Error reasons in one place: the Render API client and the probes say the same words."""

from __future__ import annotations

import socket

import pytest

from koinonia_infra.measure.health import probe_health
from koinonia_infra.render_api import ApiUnreachable, RenderClient


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_reads_the_same_for_the_api_and_for_health(closed_port: int) -> None:
    api = RenderClient(f"http://127.0.0.1:{closed_port}/v1", "rnd_test", sleep=lambda _s: None)
    with pytest.raises(ApiUnreachable) as raised:
        api.get_service("srv-1")
    # Before: httpx's own words, "All connection attempts failed".
    assert raised.value.message == "Render API at 127.0.0.1 unreachable: connection refused"
    health = probe_health(f"http://127.0.0.1:{closed_port}/health")
    assert health.detail == f"connection refused (127.0.0.1:{closed_port})"
