"""The contract's helpers: JSON Schemas generated from Render's published OpenAPI reference
(tests/contract/schemas/, see generate_schemas.py), the control plane served over a recording
fake backend, and a validator that names every mismatch. (Not a conftest.py: several test
folders have one, and `from conftest import …` would pick whichever was imported first.)"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
from aiohttp import web

from koinonia_infra.sandbox.control_plane import (
    Deploy,
    RateLimiter,
    Service,
    create_control_plane,
    render_id,
)
from koinonia_infra.sandbox.timing import FAST, TimingProfile

SCHEMAS = Path(__file__).parent / "schemas"
TOKEN = "contract-token-0123456789"
COMMIT = "c0ffee" * 6 + "c0ff"
EDGE_IMAGE = "docker.io/library/caddy:2.6.4-alpine"


@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def violations(name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks the schema `name`, as `path: message` lines."""
    validator = jsonschema.Draft202012Validator(schema(name))
    return [
        f"{error.json_path}: {error.message[:300]}"
        for error in sorted(validator.iter_errors(instance), key=lambda e: e.json_path)
    ]


def assert_valid(name: str, instance: Any) -> None:
    problems = violations(name, instance)
    assert not problems, f"answer breaks {name}.json:\n" + "\n".join(problems)


class FakeBackend:
    """Records what the control plane asked for; deploys go live at once."""

    def __init__(self, timing: TimingProfile = FAST) -> None:
        self.timing = timing
        self.services: dict[str, Service] = {}
        self.actions: list[str] = []
        for number in (1, 2):
            name = "koinonia-sms-backend" + ("" if number == 1 else f"-{number}")
            svc = Service(
                id=render_id("srv"),
                name=name,
                kind="instance",
                url=f"https://{name}.onrender.com",
                port=8080,
                number=number,
                build_command="npm ci",
                start_command="npm start",
                env={"NODE_ENV": "production", "PORT": "8080"},
            )
            svc.deploys.append(
                Deploy(render_id("dep"), "live", COMMIT, "initial", "new_commit", {})
            )
            self.services[svc.id] = svc
        edge = Service(
            id=render_id("srv"),
            name="koinonia-edge",
            kind="edge",
            url="https://koinonia-edge.onrender.com",
            port=8080,
            image=EDGE_IMAGE,
            health_check_path="/_edge/health",
            plan="starter",
        )
        edge.deploys.append(
            Deploy(render_id("dep"), "live", "", "edge", "new_commit", {}, image=EDGE_IMAGE)
        )
        self.services[edge.id] = edge

    def by_name(self, name: str) -> Service:
        return next(s for s in self.services.values() if s.name == name)

    async def suspend(self, service: Service) -> None:
        self.actions.append(f"suspend {service.name}")

    async def resume(self, service: Service) -> None:
        self.actions.append(f"resume {service.name}")

    async def restart(self, service: Service) -> None:
        self.actions.append(f"restart {service.name}")

    async def run_deploy(self, service: Service, deploy: Deploy, fail: float | None) -> None:
        self.actions.append(f"deploy {service.name} env={sorted(deploy.env.items())}")
        deploy.set_status("build_in_progress")
        deploy.set_status("update_failed" if fail is not None else "live")

    def add_service(self, service: Service) -> None:
        service.number = 9
        service.port = 8080
        service.url = f"https://{service.slug}.onrender.com"


@dataclass
class Served:
    backend: FakeBackend
    url: str
    clock: list[float]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


def serve_plane(timing: TimingProfile = FAST) -> Iterator[Served]:
    """The control plane on 127.0.0.1 (its own event loop in a thread) over `FakeBackend`; its
    rate limiter reads `Served.clock[0]` (epoch seconds) so a test can move time."""
    loop = asyncio.new_event_loop()
    clock = [1_900_000_000.0]
    started: dict[str, Any] = {}

    async def start() -> None:
        backend = FakeBackend(timing)
        limiter = RateLimiter(clock=lambda: clock[0])
        app = create_control_plane(backend, TOKEN, limiter=limiter)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        started.update(backend=backend, runner=runner, url=f"http://127.0.0.1:{port}/v1")

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield Served(started["backend"], started["url"], clock)
    finally:
        asyncio.run_coroutine_threadsafe(started["runner"].cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
