"""Fixtures for the verify tests: the servers live in verify_servers.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from verify_servers import (
    FakeDeployment,
    FakeInstance,
    ServerThread,
    edge_handler,
    hostile,
    instance_handler,
)


@pytest.fixture(scope="session")
def server_thread() -> Iterator[ServerThread]:
    st = ServerThread()
    yield st
    st.close()


@pytest.fixture(scope="session")
def hostile_url(server_thread: ServerThread) -> str:
    return f"http://127.0.0.1:{server_thread.serve(hostile)}"


@pytest.fixture(scope="session")
def plain_http_port(server_thread: ServerThread) -> int:
    """A plain-HTTP server that answers at once, before any request: what a TLS client meets
    when it talks to a port that does not speak TLS."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(client, "127.0.0.1", 0)

    server = asyncio.run_coroutine_threadsafe(start(), server_thread.loop).result(5)
    server_thread.servers.append(server)
    return int(server.sockets[0].getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_deployment(server_thread: ServerThread) -> Iterator[FakeDeployment]:
    dep = FakeDeployment(thread=server_thread, instances=[FakeInstance(1), FakeInstance(2)])
    for inst in dep.instances:
        inst.port = server_thread.serve(instance_handler(inst))
    dep.edge_port = server_thread.serve(edge_handler(dep))
    yield dep
    for inst in dep.instances:
        server_thread.stop_server(inst.port)
    server_thread.stop_server(dep.edge_port)
