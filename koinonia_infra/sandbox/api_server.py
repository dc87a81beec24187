"""The reference API instance: a small server that honours the /health contract (docs/sandbox.md).

Every /health call really queries PostgreSQL (`SELECT 1` on a pooled connection) and pings Redis;
200 `ok` when both answer, 503 `degraded` naming what is down. `GET /` is cheap and names the
instance. Configuration comes from the environment, as on Render: DATABASE_URL, REDIS_URL,
NODE_ENV, KOINONIA_INSTANCE, KOINONIA_SERVICE (secrets never on the command line), and the
sandbox-only KOINONIA_SANDBOX_DELAY_MS (every answer that much later: a slower instance).

Zero-downtime handover (see supervisor.py): the public listening socket is inherited
(`--listen-fd`) and shared with the next process of the same instance; a private socket
(`--control-fd`) answers /health before the process takes traffic. The process starts serving
the shared socket when started with `--active` or on SIGUSR1, and on SIGTERM stops accepting,
finishes in-flight requests and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

Check = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT_SECONDS = 2.0
DELAY_ENV = "KOINONIA_SANDBOX_DELAY_MS"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json"
    )


class PostgresCheck:
    """`SELECT 1` on a psycopg_pool connection: broken connections are discarded by the pool.

    The kept libraries (psycopg_pool here, redis.asyncio below) replaced hand-written libpq and
    RESP code after measuring both on a real sandbox (2 cores): the hand versions spent 693 µs of
    the instance's CPU per GET /health, these 1,127 µs (1.6x; the checks alone 3.4x and 5.5x),
    and verify's 1,000 requests stay inside their 3 s (benchmarks/bench_probe.py: 2.2 s). No
    target of the tool is bounded by this instance's /health: the load targets use the edge's
    self-answered path or a CPU-bound route.
    """

    def __init__(self, url: str, size: int = 8) -> None:
        from psycopg_pool import AsyncConnectionPool

        # Opened on first use: a pool belongs to the running event loop.
        self._pool = AsyncConnectionPool(
            url, min_size=1, max_size=size, open=False,
            kwargs={"autocommit": True, "connect_timeout": 2},
        )  # fmt: skip
        self._opened = False

    async def __call__(self) -> bool:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                if not self._opened:
                    await self._pool.open()
                    self._opened = True
                async with self._pool.connection() as conn:
                    cursor = await conn.execute("SELECT 1")
                    return await cursor.fetchone() == (1,)
        except (psycopg.Error, PoolTimeout, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()


class RedisCheck:
    """PING through redis.asyncio (its own connection pool)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._client = redis.asyncio.Redis.from_url(
            url, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
        )

    async def __call__(self) -> bool:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def incr(self, key: str, *, ttl_seconds: int = 300) -> int | None:
        """INCR `key` with an expiry, in one round trip; None when Redis did not answer."""
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, ttl_seconds)
                    value, _ = await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            return None
        return int(value)

    async def close(self) -> None:
        await self._client.aclose()


async def read_database(url: str) -> dict[str, Any] | None:
    """A real read of PostgreSQL (`current_database()`, `now()`, the server's version) on a
    connection of its own: what "database queries work" means, beyond /health's `SELECT 1`."""
    import psycopg

    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=2)
            async with conn:
                cursor = await conn.execute(
                    "SELECT current_database(), now(), current_setting('server_version')"
                )
                row = await cursor.fetchone()
    except (psycopg.Error, OSError, TimeoutError):
        return None
    if row is None:
        return None
    return {"name": row[0], "now": row[1].isoformat(), "serverVersion": row[2]}


DatabaseRead = Callable[[], Awaitable["dict[str, Any] | None"]]
CacheTouch = Callable[[str], Awaitable["int | None"]]


def create_app(
    *,
    database: Check,
    cache: Check,
    instance: str,
    service: str,
    environment: str,
    fail_health: bool = False,
    delay_seconds: float = 0.0,
    read_db: DatabaseRead | None = None,
    touch_cache: CacheTouch | None = None,
) -> web.Application:
    """The instance's routes; `database` and `cache` are the checks run on every /health.
    `delay_seconds` slows every answer down (an instance on a slower host, for the tests).
    `read_db` and `touch_cache` serve the two reference endpoints of verify's smoke checks."""

    async def health(_request: web.Request) -> web.Response:
        if delay_seconds:
            await asyncio.sleep(delay_seconds)
        # Sequential on purpose: two extra tasks per request cost more CPU than the overlap saves.
        redis_ok = await cache()
        db_ok = await database()
        body: dict[str, Any] = {
            "status": "ok",
            "database": "connected",
            "redis": "connected",
            "timestamp": _now(),
            "environment": environment,
            "instance": instance,
        }
        if db_ok and redis_ok and not fail_health:
            return _json(body)
        body.update(
            status="degraded",
            database="ok" if db_ok else "down",
            redis="ok" if redis_ok else "down",
        )
        if fail_health:
            body["reason"] = "sandbox: this deploy was told to fail its health check"
        return _json(body, status=503)

    async def root(_request: web.Request) -> web.Response:
        if delay_seconds:
            await asyncio.sleep(delay_seconds)
        return _json({"service": service, "instance": instance, "environment": environment})

    # Sandbox-only routes for the edge's tests (never part of the /health contract): a route that
    # fails, as a buggy endpoint of the real API would, and the forwarding headers as received.
    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return _json({"instance": instance, "status": code}, status=code)

    async def forwarded(request: web.Request) -> web.Response:
        names = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host")
        return _json({"instance": instance, **{n: request.headers.getall(n, []) for n in names}})

    # Sandbox-only: keeps one CPU busy for a while, so `monitor` tests see a hot instance.
    async def burn(request: web.Request) -> web.Response:
        seconds = min(30.0, float(request.match_info["seconds"]))
        await asyncio.to_thread(_burn_cpu, seconds)
        return _json({"instance": instance, "burned": seconds})

    # The reference endpoints of the runbook's functional checks ("database queries work from
    # both", "Redis cache accessible from both"), which `verify`'s smoke checks call on every
    # instance and through the edge: 200 with what was read, 503 naming what did not answer.
    async def smoke_database(_request: web.Request) -> web.Response:
        found = await read_db() if read_db is not None else None
        if found is None:
            return _json({"instance": instance, "database": None, "error": "database down"}, 503)
        return _json({"instance": instance, "database": found})

    async def smoke_cache(_request: web.Request) -> web.Response:
        key = f"koinonia:smoke:{instance}"
        value = await touch_cache(key) if touch_cache is not None else None
        if value is None:
            return _json({"instance": instance, "cache": None, "error": "redis down"}, 503)
        return _json({"instance": instance, "cache": {"key": key, "value": value}})

    app = web.Application(middlewares=[_request_log, _close_when_draining])
    app[DRAINING] = []
    app.router.add_get("/health", health)
    app.router.add_get("/", root)
    app.router.add_get(r"/_sandbox/status/{code:[2-5][0-9][0-9]}", status)
    app.router.add_get("/_sandbox/forwarded", forwarded)
    app.router.add_get(r"/_sandbox/burn/{seconds:[0-9]+(\.[0-9]+)?}", burn)
    app.router.add_get("/smoke/database", smoke_database)
    app.router.add_get("/smoke/cache", smoke_cache)
    return app


def _burn_cpu(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(10_000))


@web.middleware
async def _request_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One JSON line per request on stdout (the instance's log file): what Render's request
    logs and HTTP metrics are made of, read back by the control plane (observability.py)."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        status = exc.status
        raise
    else:
        status = response.status
        return response
    finally:
        line = {
            "time": _now(),
            "type": "request",
            "method": request.method,
            "path": request.path,
            "status": status,
            "ms": round((time.monotonic() - started) * 1000, 3),
        }
        with contextlib.suppress(OSError):
            os.write(1, (json.dumps(line) + "\n").encode())


DRAINING: web.AppKey[list[bool]] = web.AppKey("draining", list)
DRAIN_GRACE_SECONDS = 2.0


@web.middleware
async def _close_when_draining(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if request.app[DRAINING]:
        response.force_close()  # before prepare(), so the client sees `Connection: close`
    return response


async def _drain(runner: web.AppRunner, app: web.Application, site: web.SockSite | None) -> None:
    """Stop accepting (only this process's copy of a shared socket closes), then answer what
    keep-alive clients still send with `Connection: close` so they reconnect — to the next
    process — instead of meeting a closed connection; idle ones are closed after a grace."""
    app[DRAINING].append(True)
    if site is not None:
        await site.stop()
    deadline = asyncio.get_running_loop().time() + DRAIN_GRACE_SECONDS
    server = runner.server
    while server is not None and server.connections:
        if asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.05)
    await runner.cleanup()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m koinonia_infra.sandbox.api_server")
    parser.add_argument("--listen-fd", type=int, help="inherited public listening socket")
    parser.add_argument("--control-fd", type=int, help="inherited private /health socket")
    parser.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT (standalone)")
    parser.add_argument("--active", action="store_true", help="serve the public socket now")
    parser.add_argument("--fail-health", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    env = os.environ
    database = PostgresCheck(env.get("DATABASE_URL", ""))
    cache = RedisCheck(env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    app = create_app(
        database=database,
        cache=cache,
        instance=env.get("KOINONIA_INSTANCE", "api-1"),
        service=env.get("KOINONIA_SERVICE", "koinonia-sms-backend"),
        environment=env.get("NODE_ENV", "production"),
        fail_health=args.fail_health,
        # Sandbox-only knob, set like any env var through the control plane and a deploy.
        delay_seconds=float(env.get(DELAY_ENV, "0") or 0) / 1000.0,
        read_db=lambda: read_database(env.get("DATABASE_URL", "")),
        touch_cache=cache.incr,
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
    await runner.setup()
    if args.listen_fd is not None:
        public = socket.socket(fileno=args.listen_fd)
    else:
        public = socket.create_server(("127.0.0.1", args.port or 0), reuse_port=False)
    if args.control_fd is not None:
        await web.SockSite(runner, socket.socket(fileno=args.control_fd)).start()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    activate = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, activate.set)
    if args.active or args.listen_fd is None:
        activate.set()

    sites: list[web.SockSite] = []

    async def take_traffic() -> None:
        await activate.wait()
        site = web.SockSite(runner, public)
        await site.start()
        sites.append(site)

    activator = asyncio.create_task(take_traffic())
    await stop.wait()
    activator.cancel()
    await _drain(runner, app, sites[0] if sites else None)
    await database.close()
    await cache.close()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(_parse(argv)))


if __name__ == "__main__":
    main()
