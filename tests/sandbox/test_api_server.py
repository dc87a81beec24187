"""The reference API's /health contract (docs/sandbox.md, "The reference API instance")."""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from koinonia_infra.sandbox.api_server import RedisCheck, create_app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _get(app: Any, path: str, times: int = 1) -> tuple[int, dict[str, Any]]:
    async with TestClient(TestServer(app)) as client:
        for _ in range(times):
            resp = await client.get(path)
            body = await resp.json()
        return resp.status, body


def test_redis_down_is_503_degraded_naming_redis() -> None:
    async def database_up() -> bool:
        return True

    # A real client against a port nobody listens on: what "Redis is down" looks like.
    cache = RedisCheck(f"redis://:pw@127.0.0.1:{_closed_port()}/0")
    app = create_app(
        database=database_up, cache=cache, instance="api-2", service="svc", environment="staging"
    )
    status, body = asyncio.run(_get(app, "/health"))
    assert status == 503
    assert body["status"] == "degraded"
    assert body["redis"] == "down"
    assert body["database"] == "ok"
    assert body["instance"] == "api-2"
    assert body["environment"] == "staging"


def test_both_up_is_200_ok_with_the_instance_label() -> None:
    calls: list[str] = []

    async def database_up() -> bool:
        calls.append("db")
        return True

    async def cache_up() -> bool:
        calls.append("redis")
        return True

    app = create_app(
        database=database_up,
        cache=cache_up,
        instance="api-1",
        service="s",
        environment="production",
    )
    status, body = asyncio.run(_get(app, "/health", times=3))
    assert status == 200
    assert body == {
        "status": "ok",
        "database": "connected",
        "redis": "connected",
        "timestamp": body["timestamp"],
        "environment": "production",
        "instance": "api-1",
    }
    assert body["timestamp"].endswith("Z")
    # Every call checks both dependencies: nothing cached.
    assert calls.count("db") == 3
    assert calls.count("redis") == 3


@pytest.mark.integration
def test_instances_report_redis_down_in_the_sandbox(sandbox: Any) -> None:
    for inst in sandbox.descriptor.instances:
        assert httpx.get(inst.url + "/health", timeout=5).status_code == 200
    sandbox.stop("redis")
    for inst in sandbox.descriptor.instances:
        resp = httpx.get(inst.url + "/health", timeout=5)
        assert resp.status_code == 503
        assert resp.json()["redis"] == "down"
        assert resp.json()["database"] == "ok"
    sandbox.stop("postgres", sig=signal.SIGINT, timeout=20)
    resp = httpx.get(sandbox.descriptor.instance(1).url + "/health", timeout=10)
    assert resp.status_code == 503
    assert resp.json()["database"] == "down"


def test_postgres_down_is_a_failed_check_within_its_timeout() -> None:
    from koinonia_infra.sandbox.api_server import PostgresCheck

    async def run() -> bool:
        check = PostgresCheck(f"postgresql://u:pw@127.0.0.1:{_closed_port()}/db")
        try:
            return await check()
        finally:
            await check.close()

    assert asyncio.run(run()) is False


@pytest.mark.integration
@pytest.mark.usefixtures("sandbox_binaries")
def test_the_redis_check_recovers_after_redis_restarts(tmp_path: Any) -> None:
    """redis.asyncio's pool drops the dead connection: no stale socket after a restart."""
    import subprocess

    from koinonia_infra.sandbox.binaries import find_binaries

    port = _closed_port()
    argv = [str(find_binaries().redis_server), "--port", str(port), "--save", "",
            "--requirepass", "pw", "--dir", str(tmp_path)]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL)

    async def until(check: RedisCheck, expected: bool) -> bool:
        for _ in range(100):
            if await check() is expected:
                return True
            await asyncio.sleep(0.05)
        return False

    async def scenario() -> list[bool]:
        check = RedisCheck(f"redis://:pw@127.0.0.1:{port}/0")
        server = start()
        seen = [await until(check, True)]
        server.terminate()
        server.wait()
        seen.append(await until(check, False))
        server = start()
        try:
            seen.append(await until(check, True))
            seen.append(await check.incr("koinonia:test") == 1)
        finally:
            server.terminate()
            server.wait()
            await check.close()
        return seen

    assert asyncio.run(scenario()) == [True, True, True, True]
