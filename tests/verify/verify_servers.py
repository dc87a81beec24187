"""Local HTTP servers for the verify tests: a hostile one (every kind of bad answer) and a fake
two-instance deployment (instances + a round-robin edge that names its upstream), both raw
asyncio servers on a background thread so they misbehave exactly as told."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Any]


class ServerThread:
    """An asyncio loop on a thread running raw `asyncio.start_server`s."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.Server] = []

    def serve(self, handler: Handler) -> int:
        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    path = head.split(b" ", 2)[1].decode()
                    keep = await handler(path, reader, writer)
                    if not keep:
                        break
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(client, "127.0.0.1", 0)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def stop_server(self, port: int) -> None:
        for server in self.servers:
            if server.sockets and server.sockets[0].getsockname()[1] == port:
                # Closed on its own loop's thread: asyncio objects are not thread-safe.
                asyncio.run_coroutine_threadsafe(self._close_clients(server), self.loop).result(5)

    @staticmethod
    async def _close_clients(server: asyncio.Server) -> None:
        server.close()
        with contextlib.suppress(Exception):
            server.close_clients()  # type: ignore[attr-defined]

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self.servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def response(
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    ctype: str = "application/json",
) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


HEALTHY = {
    "status": "ok",
    "database": "connected",
    "redis": "connected",
    "timestamp": "2026-01-01T00:00:00Z",
    "environment": "production",
}


async def hostile(path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    if path == "/health":
        writer.write(response(200, json.dumps({**HEALTHY, "instance": "api-1"}).encode()))
    elif path == "/nonjson":
        writer.write(response(200, b"<html>hello</html>", ctype="text/html"))
    elif path == "/wrongshape":
        writer.write(response(200, b"[1, 2, 3]"))
    elif path == "/missing":
        writer.write(response(200, b'{"status": "ok"}'))
    elif path == "/badutf8":
        writer.write(response(200, b'{"status": "\xff\xfe ok"}'))
    elif path == "/huge-declared":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(1600):  # 100 MB, as long as the client keeps reading
            writer.write(chunk)
            await writer.drain()
        return False
    elif path == "/huge-chunked":
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        for _ in range(1600):
            writer.write(frame)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return False
    elif path == "/endless":
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"1\r\n{\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
    elif path == "/stall":
        await asyncio.sleep(3600)
    elif path == "/redirect":
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: /redirect\r\nContent-Length: 0\r\n\r\n")
    elif path == "/500":
        writer.write(response(500, b"Internal Server Error", ctype="text/plain"))
    elif path == "/reset":
        sock = writer.get_extra_info("socket")
        # SO_LINGER 0: close() sends a RST instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return False
    elif path == "/garbage":
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        return False
    else:
        writer.write(response(404, b"{}"))
    await writer.drain()
    return True


# ------------------------------------------------------------------------------------------------
# A fake deployment: N instances and an edge, all controllable.
# ------------------------------------------------------------------------------------------------


@dataclass
class FakeInstance:
    number: int
    port: int = 0
    health: dict[str, Any] = field(default_factory=lambda: dict(HEALTHY))
    status: int = 200
    delay: float = 0.0
    up: bool = True


@dataclass
class FakeDeployment:
    thread: ServerThread
    instances: list[FakeInstance]
    edge_port: int = 0
    rr: int = 0
    foreign: bool = False
    # With no live instance, the edge answers after this long: Caddy keeps retrying for its
    # lb_try_duration (the edge's retry window) before answering 503 itself.
    retry_window: float = 0.0

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "stack": "test",
            "environment": "production",
            "edgeUrl": self.edge_url,
            "instances": [
                {
                    "number": i.number,
                    "name": "koinonia-sms-backend" + ("" if i.number == 1 else f"-{i.number}"),
                    "serviceId": f"srv-{i.number}",
                    "url": f"http://127.0.0.1:{i.port}",
                    "privateAddress": f"127.0.0.1:{i.port}",
                }
                for i in self.instances
            ],
            **extra,
        }


def instance_handler(inst: FakeInstance) -> Handler:
    async def handle(path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if not inst.up:
            writer.transport.abort()
            return False
        if inst.delay:
            await asyncio.sleep(inst.delay)
        writer.write(make_answer(inst))
        await writer.drain()
        return True

    return handle


def make_answer(inst: FakeInstance) -> bytes:
    body = json.dumps({**inst.health, "instance": f"api-{inst.number}"}).encode()
    return response(inst.status, body)


def edge_handler(dep: FakeDeployment) -> Handler:
    async def handle(path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        # Like Caddy: round robin over the live instances, naming the upstream in a header;
        # with none, 503 "no upstreams available" with no upstream header and an empty body
        # (caddyserver/caddy v2.6.2 modules/caddyhttp/reverseproxy/reverseproxy.go:524).
        live = [i for i in dep.instances if i.up]
        if not live:
            if dep.retry_window:
                await asyncio.sleep(dep.retry_window)
            writer.write(response(503, b"", ctype="text/plain"))
        else:
            inst = live[dep.rr % len(live)]
            dep.rr += 1
            if inst.delay:
                await asyncio.sleep(inst.delay)
            upstream = "10.9.9.9:8080" if dep.foreign else f"127.0.0.1:{inst.port}"
            body = json.dumps({**inst.health, "instance": f"api-{inst.number}"}).encode()
            writer.write(response(inst.status, body, {"X-Koinonia-Upstream": upstream}))
        await writer.drain()
        return True

    return handle
