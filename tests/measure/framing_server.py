"""A real local HTTP/1.1 server for the load's client: each framing a server may use, and the
answers a burst must survive (the `server` fixture of tests/measure/conftest.py)."""

from __future__ import annotations

import socketserver
import threading
import time
from collections import Counter

# path -> (raw response, close the connection after it)
RESPONSES: dict[str, tuple[bytes, bool]] = {
    "/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Koinonia-Upstream: api-a:1\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        False,
    ),
    "/length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", False),
    "/close": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until close", True),
    "/http10": (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    "/204": (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    # A 304 may carry the Content-Length of the full representation: there is still no body.
    "/304": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", False),
    "/100": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    "/garbage": (b"SMTP ready\r\n\r\n", True),
    # Two answers in one write to one request: the second was asked for by nobody.
    "/two": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo",
        False,
    ),
    "/big-head": (
        b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok",
        False,
    ),
    # A keep-alive answer (HTTP/1.1, no `Connection: close`), then the server closes anyway, as
    # one does on an idle timeout.
    "/then-close": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    "/fail": (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail", False),
}
# Paths answered only after this long (the answer is /length's).
SLOW: dict[str, float] = {"/slow": 0.05, "/stall": 3600.0}


class _Handler(socketserver.StreamRequestHandler):
    server: FramingServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        while True:
            line = self.rfile.readline()
            if not line:
                return
            path = line.split()[1].decode()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            with self.server.lock:
                self.server.requests[path] += 1
            if path in SLOW:
                time.sleep(SLOW[path])
                path = "/length"
            answer, close = RESPONSES[path]
            self.wfile.write(answer)
            self.wfile.flush()
            if close:
                return


class FramingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: Counter[str] = Counter()


def url_of(srv: FramingServer, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"
