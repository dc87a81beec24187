"""One-off reads through httpx (health, JSON): never raise for network trouble, the sample
carries the reason."""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from koinonia_infra.caddy import UPSTREAM_HEADER
from koinonia_infra.measure.attribution import upstream_from_body
from koinonia_infra.measure.client import DEFAULT_MAX_BODY, DEFAULT_TIMEOUT
from koinonia_infra.measure.reasons import MAX_REDIRECTS, ProtocolError, describe_error
from koinonia_infra.measure.samples import Sample


@dataclass(frozen=True, slots=True)
class Fetched:
    """One httpx GET: its sample plus the (capped) body, None when no complete body arrived."""

    url: str
    sample: Sample
    body: bytes | None

    def json(self) -> tuple[Any, str | None]:
        """(parsed JSON, None) or (None, one-line reason)."""
        if self.body is None:
            return None, self.sample.error or "no body"
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"body is not valid UTF-8 (byte {exc.start})"
        try:
            return json.loads(text), None
        except json.JSONDecodeError as exc:
            snippet = text[:40].replace("\n", " ").replace("\r", " ")
            return None, f"body is not JSON ({exc.msg} at char {exc.pos}): {snippet!r}"
        except RecursionError:
            return None, "body is not usable JSON (nested too deeply)"


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle, ~70 ms, which every
    /health probe (a client each) would otherwise pay, and a drill probes many times a second."""
    return httpx.create_ssl_context(verify=verify)


def make_http_client(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_connections: int = 32,
    verify_tls: bool = True,
    follow_redirects: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """Plain httpx for one-off reads: redirects followed by httpx itself, at most MAX_REDIRECTS
    (then `TooManyRedirects`, reported as a redirect loop). `transport` is for tests
    (`httpx.MockTransport`); it replaces the pool, so the limits and TLS options then do nothing.
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        transport=transport,
        limits=limits,
        verify=_tls_context(verify_tls),
        timeout=httpx.Timeout(timeout),
        follow_redirects=follow_redirects,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": "koinonia-infra", "Accept": "application/json, */*"},
        trust_env=False,
    )


async def _get(client: httpx.AsyncClient, url: str, cap: int) -> tuple[int, str | None, bytes]:
    """(status, upstream header, body) of the final answer; the body capped at `cap` bytes."""
    async with client.stream("GET", url) as response:
        _check_cap(response.headers.get("content-length"), 0, cap)
        body = bytearray()
        # Decoded bytes (httpx asks for gzip/deflate/br), capped as they arrive: a small
        # compressed body cannot inflate past the cap.
        async for chunk in response.aiter_bytes():
            body += chunk
            _check_cap(None, len(body), cap)
        return response.status_code, response.headers.get(UPSTREAM_HEADER), bytes(body)


async def fetch_async(
    client: httpx.AsyncClient,
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_body_bytes: int = DEFAULT_MAX_BODY,
) -> Fetched:
    """One GET, redirects followed; never raises for network or protocol trouble (the sample
    carries the reason)."""
    started = time.monotonic()
    try:
        # The overall deadline matters: read timeouts alone never end a body that trickles.
        async with asyncio.timeout(timeout):
            status, upstream, data = await _get(client, url, max_body_bytes)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # every failure is a sample, never an escape
        return Fetched(
            url=url,
            sample=Sample(
                started=started,
                latency_ms=(time.monotonic() - started) * 1000.0,
                status=None,
                upstream=None,
                error=describe_error(exc, where=_where(url), timeout=timeout),
            ),
            body=None,
        )
    return Fetched(
        url=url,
        sample=Sample(
            started=started,
            latency_ms=(time.monotonic() - started) * 1000.0,
            status=status,
            upstream=upstream or upstream_from_body(data),
            error=None,
        ),
        body=data,
    )


def _check_cap(declared: str | None, received: int, cap: int) -> None:
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise ProtocolError(f"response body of {declared} bytes is larger than the {cap}-byte cap")
    if received > cap:
        raise ProtocolError(f"response body larger than {cap} bytes")


def _where(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


async def fetch_many_async(
    urls: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    verify_tls: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Fetched]:
    async with make_http_client(
        timeout=timeout, verify_tls=verify_tls, transport=transport
    ) as client:
        return list(
            await asyncio.gather(
                *(
                    fetch_async(client, u, timeout=timeout, max_body_bytes=max_body_bytes)
                    for u in urls
                )
            )
        )


def fetch_many(
    urls: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    verify_tls: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Fetched]:
    """Several GETs at once (one event loop); results in the order of `urls`."""
    return asyncio.run(
        fetch_many_async(
            urls,
            timeout=timeout,
            max_body_bytes=max_body_bytes,
            verify_tls=verify_tls,
            transport=transport,
        )
    )


def fetch(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    verify_tls: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Fetched:
    """One GET through httpx; never raises for network trouble."""
    return fetch_many(
        [url],
        timeout=timeout,
        max_body_bytes=max_body_bytes,
        verify_tls=verify_tls,
        transport=transport,
    )[0]
