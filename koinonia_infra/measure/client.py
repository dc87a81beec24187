"""The HTTP/1.1 keep-alive client the load runs on.

Responses are parsed by httptools (llhttp) inside an asyncio protocol, on uvloop where the
platform has it (`run_load`): kept libraries, not a hand-written parser. Measured on a 2-core box
against a local Caddy: httpx + aiohttp ~1,500 req/s and p50 3-5x wrk's at concurrency 8 (the
client's own per-request overhead becomes the latency it reports); an httpx AsyncClient over a
transport on this connection pool ~0.5-0.7x wrk's rate with p50 up to 1.8x; the pool called
directly ~0.8-0.9x wrk's rate with p50 within 1.15x. Every request has a deadline (connect +
headers + body) and every body and header block is capped, so a hostile server costs a bounded
amount of time and memory.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import httptools
import httpx

from koinonia_infra.caddy import UPSTREAM_HEADER
from koinonia_infra.errors import UsageError
from koinonia_infra.measure.attribution import upstream_from_body
from koinonia_infra.measure.reasons import ConnectionClosed, ProtocolError, describe_error
from koinonia_infra.measure.samples import Sample

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: a /health body is a few hundred bytes
MAX_HEAD = 64 << 10
_UPSTREAM_BYTES = UPSTREAM_HEADER.lower().encode()
_WATCHED_LENGTHS = frozenset(map(len, (b"content-length", b"transfer-encoding", _UPSTREAM_BYTES)))
T = TypeVar("T")


def run_load(main: Coroutine[Any, Any, T]) -> T:
    """Run the load's event loop: uvloop where the platform has it (it has no Windows build),
    else asyncio's. The client's own per-request cost is latency it would report as the
    target's, and uvloop roughly halves it (docs/verify.md, "The traffic probe")."""
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    result: list[T] = []

    async def keep() -> None:
        # The main task ends holding None, not the result: on its way out Python 3.11's
        # asyncio.Runner.run calls signal.getsignal(SIGINT), which formats the repr of its handler,
        # which holds the task, whose repr holds its result: every sample (0.5 s for 30,000).
        result.append(await main)

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(keep())
    return result[0]


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    host: str
    port: int
    tls: bool
    where: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{url!r}: not an http(s) URL")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError:
            raise UsageError(f"{url!r}: invalid port") from None
        host = parts.hostname
        default = (tls and port == 443) or (not tls and port == 80)
        host_header = host if ":" not in host else f"[{host}]"
        if not default:
            host_header = f"{host_header}:{port}"
        return cls(url=url, host=host, port=port, tls=tls, where=host_header)


@dataclass(slots=True)
class _Raw:
    status: int
    upstream: str | None
    body: bytes
    keep_alive: bool
    finished: float


# What a connection calls when its request ends: (the connection, None) with the answer on the
# connection's fields, or (the connection, why it failed). Called once per request.
Answered = Callable[["_Conn", BaseException | None], None]


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time.

    Responses are parsed by httptools (llhttp, the parser of Node.js and uvicorn): framing
    (Content-Length, chunked, read-until-close), keep-alive and the bodiless 204/304 are its
    rules, not ours. What stays here is what a measuring client adds: caps on headers and body,
    the upstream header, and refusing a 1xx (the load never sends `Expect`).

    The end of a request is a callback (`Answered`), not a future: the load sends a worker's
    next request from it, in the same loop turn as the answer (wrk's design), with no task to
    wake in between. An awaiting caller wraps it in a future (`LeanClient.exchange`).
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.answered: Answered | None = None  # set while a request is in flight
        self.deadline = 0.0
        self.parser = httptools.HttpResponseParser(self)
        self._reset_state()

    def _reset_state(self) -> None:
        self.upstream: str | None = None
        self.head_bytes = 0
        self.head_read = 0
        self.framed = False  # Content-Length or chunked: the end of the body is known
        self.in_body = False
        self.chunks: list[bytes] = []
        self.body_size = 0
        self.got_bytes = False
        self.arrived = 0.0
        self.complete = False
        self.keep_alive = False
        self.failure: ProtocolError | None = None

    # asyncio callbacks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only the same interface.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answered is None:
            return
        if self.in_body and not self.framed and exc is None:
            # No length and not chunked: the body is whatever came before the close (RFC 9112
            # section 6.3, rule 8); llhttp has no end-of-stream call, so it is completed here.
            self.keep_alive = False
            self._finish(None)
        else:
            self._finish(ConnectionClosed(exc, got_bytes=self.got_bytes))

    def data_received(self, data: bytes) -> None:
        if self.answered is None:
            self.abort()  # unsolicited bytes: this connection is no longer in a known state
            return
        self.got_bytes = True
        # When the last bytes arrived, taken before they are parsed: our own parsing (and that of
        # the answers handed over in the same loop turn) is not the target's latency.
        self.arrived = time.monotonic()
        if not self.in_body:
            # httptools holds a header until its end: one that never ends is refused here, by the
            # bytes read while the head is incomplete, so it costs at most MAX_HEAD plus a read.
            if self.head_read > MAX_HEAD:
                self.fail(ProtocolError(f"response headers larger than {MAX_HEAD} bytes"))
                return
            self.head_read += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.complete:
                # The answer is whole; what came after it is not ours (see on_message_begin).
                self.abort()
                self._finish(None)
            else:
                self.fail(self.failure or _invalid(exc))
            return
        if self.complete:
            # Handed over only once the parser is done with these bytes, so that whatever the
            # callback sends next is never mistaken for what is still being parsed.
            self._finish(None)

    # request ----------------------------------------------------------------------------------
    def send(self, request: bytes, deadline: float, answered: Answered) -> None:
        assert self.transport is not None
        # Written first: the latency runs from the caller's clock reading, and nothing of this
        # answer can be read before the loop runs again.
        self.transport.write(request)
        self._reset_state()
        self.deadline = deadline
        self.answered = answered

    def _finish(self, exc: BaseException | None) -> None:
        answered = self.answered
        if answered is not None:
            self.answered = None
            answered(self, exc)

    def fail(self, exc: BaseException) -> None:
        """End the request in flight with `exc`; the connection is dropped first, so the
        callback sees it closed."""
        self.abort()
        self._finish(exc)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def body(self) -> bytes:
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def raw(self) -> _Raw:
        return _Raw(
            status=self.parser.get_status_code(),
            upstream=self.upstream,
            body=self.body,
            keep_alive=self.keep_alive and not self.closed,
            finished=self.arrived,
        )

    # httptools callbacks ----------------------------------------------------------------------
    def _refuse(self, reason: str) -> None:
        self.failure = ProtocolError(reason)
        raise self.failure

    def on_message_begin(self) -> None:
        if self.complete:
            # A second response in the bytes that ended the first: no request of ours asked
            # for it, so the connection cannot be trusted with the next one.
            self.keep_alive = False
            self._refuse("unsolicited response after the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name)
        self.head_bytes += size + len(value) + 4
        if self.head_bytes > MAX_HEAD:
            self._refuse(f"response headers larger than {MAX_HEAD} bytes")
        if size not in _WATCHED_LENGTHS:
            return  # cheaper than lowering every name: most headers are none of the three
        key = name.lower()
        if key == b"content-length":
            if value.strip().isdigit() and int(value) > self.max_body:
                self._refuse(
                    f"response body of {int(value)} bytes is larger than the "
                    f"{self.max_body}-byte cap"
                )
            self.framed = True
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            self.framed = True
        elif key == _UPSTREAM_BYTES:
            self.upstream = value.strip().decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self._refuse(f"unexpected interim response {status}")
        if status in (204, 304):
            self.framed = True  # never a body (RFC 9112 section 6.3, rule 1)
        self.in_body = True

    def on_body(self, chunk: bytes) -> None:
        # Chunks are kept as they come and joined once: a body of many small chunks is not
        # copied again on each one.
        self.body_size += len(chunk)
        if self.body_size > self.max_body:
            self._refuse(f"response body larger than {self.max_body} bytes")
        self.chunks.append(chunk)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.in_body = False
        self.complete = True


def _settle(waiter: asyncio.Future[_Raw], conn: _Conn, exc: BaseException | None) -> None:
    if waiter.done():
        return  # the awaiting task was cancelled
    if exc is None:
        waiter.set_result(conn.raw())
    else:
        waiter.set_exception(exc)


def _invalid(exc: httptools.HttpParserError) -> ProtocolError:
    detail = " ".join(str(exc).split())[:80]
    return ProtocolError(f"invalid HTTP response ({detail})" if detail else "invalid HTTP response")


class LeanClient:
    """Keep-alive HTTP/1.1 connections to one origin, one request in flight on each, idle ones
    reused. Use from a single event loop. Its callers bound their own requests in flight (the
    load's workers, the steady rate's in-flight cap).

    Deadlines are kept by one sweep over the connections in flight, every `tick` seconds while
    any is (a tenth of the timeout, at most 50 ms), not by a timer per request: a uvloop timer
    set and cancelled per request was a tenth of the load's CPU. A request therefore fails at
    most one tick after its deadline.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        verify_tls: bool = True,
    ) -> None:
        self.target = _Target.parse(url)
        self.timeout = timeout
        self.max_body = max_body_bytes
        self.tick = min(0.05, max(timeout, 0.001) / 10)
        self._idle: list[_Conn] = []
        self._open: set[_Conn] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._ssl: ssl.SSLContext | None = None
        if self.target.tls:
            self._ssl = ssl.create_default_context()
            if not verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    async def connect(self) -> _Conn:
        """A new connection of this client's (swept for deadlines, closed by `aclose`)."""
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Conn(self.max_body),
            self.target.host,
            self.target.port,
            ssl=self._ssl,
            server_hostname=self.target.host if self._ssl else None,
        )
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open.add(conn)
        return conn

    def send(self, conn: _Conn, request: bytes, deadline: float, answered: Answered) -> None:
        """Send `request` on `conn` (one of this client's, idle); `answered` is called once,
        by `deadline` (time.monotonic()) at the latest, give or take one tick."""
        conn.send(request, deadline, answered)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.tick, self._sweep_deadlines)

    def _sweep_deadlines(self) -> None:
        self._sweep = None
        now = time.monotonic()
        busy = False
        for conn in list(self._open):
            if conn.answered is None:
                if conn.closed:
                    self._open.discard(conn)
            elif now >= conn.deadline:
                conn.fail(TimeoutError())  # its callback may send again: that arms a sweep
            else:
                busy = True
        if busy and self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.tick, self._sweep_deadlines)

    async def exchange(self, request: bytes, deadline: float) -> _Raw:
        """One request on an idle connection or a new one, answered by `deadline`
        (time.monotonic()) or failed."""
        # A pooled connection the server closed while idle fails before any byte arrives: that
        # is the client's doing, not the server's, so it is retried once on a fresh connection.
        loop = asyncio.get_running_loop()
        for attempt in (0, 1):
            conn: _Conn | None = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            reused = conn is not None
            if conn is None:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    conn = await self.connect()
            waiter: asyncio.Future[_Raw] = loop.create_future()
            self.send(conn, request, deadline, functools.partial(_settle, waiter))
            try:
                raw = await waiter
            except ConnectionClosed as exc:
                conn.abort()
                if reused and not exc.got_bytes and attempt == 0:
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
            if raw.keep_alive and not conn.closed:
                self._idle.append(conn)
            else:
                conn.abort()
            return raw
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in (*self._idle, *self._open):
            conn.abort()
        self._idle.clear()
        self._open.clear()


class _Probe:
    """Load GETs straight on `LeanClient`: the request serialized once, the answer read from the
    parser's own fields. httpx is the API of every other read; here its per-request work
    (building an `httpx.Response` and its headers) is CPU the client would report as the
    target's latency: against a target faster than the client (the edge's self-answered
    `/_edge/health`, benchmarks/bench_probe.py) going through an httpx transport held the probe
    to 0.25x wrk's rate with 3.9x its p50 on a 2-core box.
    `get()` never raises: a failure is a sample with a one-line reason.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        max_body_bytes: int,
        verify_tls: bool,
    ) -> None:
        self.lean = LeanClient(
            url, timeout=timeout, max_body_bytes=max_body_bytes, verify_tls=verify_tls
        )
        # httpx serializes the request line and headers once (Host, escaping of the path).
        request = httpx.Request("GET", url, headers=_LOAD_HEADERS)
        head = [b"GET ", request.url.raw_path, b" HTTP/1.1\r\n"]
        for key, value in request.headers.raw:
            head += (key, b": ", value, b"\r\n")
        self.payload = b"".join([*head, b"\r\n"])
        self.timeout = timeout
        self.where = self.lean.target.where

    async def get(self) -> Sample:
        started = time.monotonic()
        try:
            raw = await self.lean.exchange(self.payload, started + self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is a sample, never an escape
            return self.failed(started, exc)
        return _answer(started, raw.finished, raw.status, raw.upstream, raw.body)

    @staticmethod
    def answered(started: float, conn: _Conn) -> Sample:
        """The sample of the answer `conn` has just completed."""
        status = conn.parser.get_status_code()
        return _answer(started, conn.arrived, status, conn.upstream, conn.body)

    def failed(self, started: float, exc: BaseException) -> Sample:
        return Sample(
            started=started,
            latency_ms=(time.monotonic() - started) * 1000.0,
            status=None,
            upstream=None,
            error=describe_error(exc, where=self.where, timeout=self.timeout),
        )

    async def aclose(self) -> None:
        await self.lean.aclose()


def _answer(
    started: float, finished: float, status: int, upstream: str | None, body: bytes
) -> Sample:
    # Positional: with keywords, a frozen dataclass's construction costs twice as much (about
    # 1 µs more per answer). The order is Sample's: started, latency_ms, status, upstream, error.
    return Sample(
        started, (finished - started) * 1000.0, status, upstream or upstream_from_body(body), None
    )


_LOAD_HEADERS = {
    "User-Agent": "koinonia-infra",
    "Accept": "application/json, */*",
    "Accept-Encoding": "identity",
}
