"""What clients see of the sandbox's edge (real Caddy, real instances): the forwarding headers
an instance receives, and slow or idle clients cut off."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from koinonia_infra.sandbox.stack import SANDBOX_EDGE_ENV

pytestmark = pytest.mark.integration


def test_the_instance_receives_forwarding_headers_as_the_trusted_proxy_sent_them(
    sandbox: Any,
) -> None:
    # On Render the edge's peer is Render's proxy, from a private address; here the client on
    # loopback stands in for it. What it sent reaches the instance: X-Forwarded-Proto as is (an
    # SMS provider's webhook signature covers the public https URL), X-Forwarded-For with the
    # proxy's own address appended, as each proxy in a chain does.
    with httpx.Client(base_url=sandbox.edge_url, timeout=10) as client:
        got = client.get(
            "/_sandbox/forwarded",
            headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        ).json()
        assert got["X-Forwarded-For"] == ["203.0.113.7, 127.0.0.1"]
        assert got["X-Forwarded-Proto"] == ["https"]
        # Without them (a peer that is the client itself), the edge states what it saw.
        plain = client.get("/_sandbox/forwarded").json()
        assert plain["X-Forwarded-For"] == ["127.0.0.1"]
        assert plain["X-Forwarded-Proto"] == ["http"]


# --- slow clients: the sandbox's edge with short client timeouts -------------------------------

SHORT = {
    "clientHeaderTimeoutSeconds": 1,
    "clientBodyTimeoutSeconds": 2,
    "clientIdleTimeoutSeconds": 2,
}
# Far beyond every timeout above: a connection still open then is one the edge holds forever.
GIVE_UP_SECONDS = 20.0


@pytest.fixture
def short_timeouts_sandbox(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(SANDBOX_EDGE_ENV, json.dumps(SHORT))
    return request.getfixturevalue("sandbox")


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5)
    sock.settimeout(0.25)
    return sock


def _closed_by_edge(sock: socket.socket, trickle: Iterator[bytes]) -> bool:
    """Sends a byte of `trickle` every 0.25 s (nothing once it is exhausted) and reads whatever
    comes back; True once the edge has closed the connection, False if it is still open at
    GIVE_UP_SECONDS."""
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while time.monotonic() < deadline:
        chunk = next(trickle, b"")
        try:
            if chunk:
                sock.sendall(chunk)
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
        if data == b"":
            return True
    return False


def _forever(byte: bytes) -> Iterator[bytes]:
    while True:
        yield byte


def test_slow_and_idle_clients_are_cut_off(short_timeouts_sandbox: Any) -> None:
    url = short_timeouts_sandbox.edge_url
    host = urlsplit(url).netloc.encode()

    # Slowloris: headers that never end, one byte at a time.
    with _connect(url) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nX-Slow: ")
        assert _closed_by_edge(sock, _forever(b"a")), "a never-ending header held the edge"

    # A body announced and then trickled.
    with _connect(url) as sock:
        sock.sendall(
            b"POST /_sandbox/forwarded HTTP/1.1\r\nHost: " + host
            + b"\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
        )  # fmt: skip
        assert _closed_by_edge(sock, _forever(b"a")), "a trickled body held the edge"

    # A keep-alive connection that goes quiet after one answered request.
    with _connect(url) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        answer = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert _closed_by_edge(sock, iter(())), "an idle keep-alive connection held the edge"

    # And the edge still serves everyone else.
    assert httpx.get(url + "/", timeout=10).status_code == 200
