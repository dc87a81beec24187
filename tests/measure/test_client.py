"""The load's HTTP/1.1 client (httptools inside an asyncio protocol) against a real local server
that answers each framing a server may use: chunked, Content-Length with keep-alive, read until
close, 1xx, 204 and 304."""

from __future__ import annotations

import asyncio
import time

import pytest
from framing_server import FramingServer as _Server
from framing_server import url_of as _url

from koinonia_infra.measure.client import LeanClient
from koinonia_infra.measure.load import burst


async def _get_all(url: str, times: int) -> list[tuple[int, bytes]]:
    """(status, body) of `times` GETs on one keep-alive client."""
    client = LeanClient(url, timeout=3.0)
    path = url.split("/", 3)[3]
    request = f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    try:
        answers = []
        for _ in range(times):
            raw = await client.exchange(request, time.monotonic() + 3.0)
            answers.append((raw.status, raw.body))
        return answers
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("path", "status", "body", "connections"),
    [
        ("/chunked", 200, b"hello world", 1),
        ("/length", 200, b"hello", 1),
        ("/204", 204, b"", 1),
        ("/304", 304, b"", 1),
        ("/close", 200, b"read until close", 3),
        ("/http10", 200, b"ok", 3),
    ],
)
def test_each_framing_gives_the_body_and_keeps_alive_when_it_may(
    server: _Server, path: str, status: int, body: bytes, connections: int
) -> None:
    answers = asyncio.run(_get_all(_url(server, path), 3))
    assert answers == [(status, body)] * 3
    # Keep-alive: three requests on one connection; a response ended by the close (or HTTP/1.0
    # without keep-alive) costs a connection each.
    assert server.connections == connections


def test_the_upstream_header_reaches_the_sample(server: _Server) -> None:
    result = burst(_url(server, "/chunked"), requests=4, concurrency=1)
    assert [(s.status, s.upstream, s.error) for s in result.samples] == [(200, "api-a:1", None)] * 4
    assert server.connections == 1


def test_an_interim_response_is_refused_with_a_reason(server: _Server) -> None:
    (sample,) = burst(_url(server, "/100"), requests=1, concurrency=1).samples
    assert sample.status is None
    assert sample.error is not None
    assert sample.error.startswith("unexpected interim response 100")


def test_a_response_that_is_not_http_is_an_invalid_response(server: _Server) -> None:
    (sample,) = burst(_url(server, "/garbage"), requests=1, concurrency=1).samples
    assert sample.error is not None
    assert sample.error.startswith("invalid HTTP response")
    assert "\n" not in sample.error


def test_an_answer_nobody_asked_for_is_never_taken_for_the_next_one(server: _Server) -> None:
    result = burst(_url(server, "/two"), requests=3, concurrency=1)
    # Each request gets the first answer of its write; the extra one costs its connection.
    assert [(s.status, s.error) for s in result.samples] == [(200, None)] * 3
    assert server.connections == 3


def test_headers_past_the_cap_are_refused_with_a_reason(server: _Server) -> None:
    (sample,) = burst(_url(server, "/big-head"), requests=1, concurrency=1).samples
    assert sample.error is not None
    assert sample.error.startswith("response headers larger than 65536 bytes")


def test_a_kept_connection_the_server_closed_costs_no_failure(server: _Server) -> None:
    result = burst(_url(server, "/then-close"), requests=4, concurrency=1)
    assert [(s.status, s.error) for s in result.samples] == [(200, None)] * 4
    assert server.connections == 4


def test_a_stop_rule_that_fails_ends_the_burst_with_its_error(server: _Server) -> None:
    from koinonia_infra.measure.load import burst_async

    def broken(completed: int, failed: int, recent: object) -> str | None:
        raise RuntimeError("broken stop rule")

    with pytest.raises(RuntimeError, match="broken stop rule"):
        asyncio.run(
            asyncio.wait_for(
                burst_async(_url(server, "/length"), 10, 2, stop_when=broken), timeout=10
            )
        )


def test_a_stop_rule_that_fails_on_a_refused_connection_ends_the_burst_too() -> None:
    import socket

    from koinonia_infra.measure.load import burst_async

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    def broken(completed: int, failed: int, recent: object) -> str | None:
        raise RuntimeError("broken stop rule")

    with pytest.raises(RuntimeError, match="broken stop rule"):
        asyncio.run(
            asyncio.wait_for(
                burst_async(f"http://127.0.0.1:{port}/", 10, 2, stop_when=broken), timeout=10
            )
        )
