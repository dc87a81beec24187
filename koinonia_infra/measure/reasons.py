"""Why a request failed, in one line, whatever layer raised it (never a traceback)."""

from __future__ import annotations

import errno
import socket
import ssl

MAX_REDIRECTS = 5


class ProtocolError(Exception):
    """A response this client refuses (too big, malformed); the message is the reason."""


class ConnectionClosed(Exception):
    def __init__(self, exc: BaseException | None, *, got_bytes: bool) -> None:
        super().__init__("connection closed")
        self.got_bytes = got_bytes
        if exc is not None:
            self.__cause__ = exc


def describe_error(exc: BaseException, *, where: str, timeout: float) -> str:
    """A one-line reason for a failed request, with where it went: "<reason> (<host:port>)"."""
    return f"{reason(exc, timeout=timeout)} ({where})"


def reason(exc: BaseException, *, timeout: float | None = None) -> str:
    """A one-line reason for a failed request, whatever layer raised it (never a traceback).

    The innermost cause decides: the outer exception's type often says less than its cause.
    httpx raises its own exception from httpcore's, and httpcore's carries the original (the
    OSError, ssl or h11 error) as its first argument, its `__cause__` dropped on the way out of
    the connection pool (httpcore `_exceptions.map_exceptions`: `raise to_exc(exc) from exc`).
    """
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        nxt = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        cur = nxt
    for e in reversed(chain):
        found = _classify(e, timeout)
        if found is not None:
            return found
    text = _one_line(str(exc)) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _classify(e: BaseException, timeout: float | None) -> str | None:
    name = type(e).__name__
    if isinstance(e, ProtocolError):
        return str(e)
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {_one_line(str(getattr(e, 'reason', None) or e))}"
    if isinstance(e, ssl.CertificateError):
        return f"TLS error: {_one_line(str(e))}"
    if isinstance(e, socket.gaierror):
        return "DNS lookup failed"
    if isinstance(e, ConnectionRefusedError) or (
        isinstance(e, OSError) and e.errno == errno.ECONNREFUSED
    ):
        return "connection refused"
    if isinstance(e, ConnectionResetError | BrokenPipeError | ConnectionClosed):
        return "connection closed by the server before a complete response"
    if name == "RemoteProtocolError":
        # h11's own error is a response it could not parse; httpx's and httpcore's without an
        # h11 cause is "Server disconnected without sending a response".
        if type(e).__module__.split(".")[0] == "h11":
            return "invalid HTTP response"
        return "connection closed by the server before a complete response"
    if name in ("ReadError", "WriteError") and not str(e):
        return "connection closed by the server before a complete response"
    if name == "TooManyRedirects":
        return f"redirect loop: more than {MAX_REDIRECTS} redirects"
    if isinstance(e, TimeoutError) or name.endswith("Timeout"):
        return "timed out" if timeout is None else f"timed out after {timeout:g}s"
    if isinstance(e, OSError) and e.strerror:
        return _one_line(e.strerror)
    return None


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
