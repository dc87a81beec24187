"""The sandbox control plane: the subset of Render's REST API (DESIGN.md §3) that the day-2
commands use, answered with Render's JSON shapes and backed by the sandbox's real processes.

    GET  /v1/services?name=&type=&limit=&cursor=       [{"cursor", "service"}]
    GET  /v1/services/{id}
    GET  /v1/services/{id}/deploys?limit=&cursor=      [{"cursor", "deploy"}], newest first
    POST /v1/services/{id}/deploys                     201 deploy (409 if one is in progress)
    GET  /v1/services/{id}/deploys/{deployId}
    POST /v1/services/{id}/suspend | resume | restart  202
    GET  /v1/services/{id}/env-vars?limit=&cursor=     [{"cursor", "envVar": {"key", "value"}}]
    PUT  /v1/services/{id}/env-vars/{key}              {"key", "value"}; used by the next deploy
    POST /v1/_sandbox/services/{id}/fail-next-deploy   sandbox-only: the next deploy of this
                                                       service never gets healthy (body, optional:
                                                       {"healthTimeoutSeconds": 3})

Every route needs `Authorization: Bearer <token>` (401 otherwise); unknown ids are 404; errors
are `{"id": ..., "message": ...}` like Render's. Nothing is pushed to the branch in the sandbox,
so a deploy builds the commit the service already runs (Render's "deploy latest commit"), unless
the request names a `commitId`: instances that started on one commit stay on one commit.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from aiohttp import web

DeployStatus = Literal[
    "created", "build_in_progress", "update_in_progress", "live", "deactivated",
    "update_failed", "canceled",
]  # fmt: skip
IN_PROGRESS: tuple[DeployStatus, ...] = ("created", "build_in_progress", "update_in_progress")
OWNER_ID = "tea-sandbox0000000000000"
# A deploy told to fail is given up on sooner than a real one: the outcome is the same.
FAIL_HEALTH_TIMEOUT = 3.0
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALPHABET = string.ascii_lowercase + string.digits


def render_id(prefix: str) -> str:
    """Render-like ids: `srv-` / `dep-` followed by 20 lowercase alphanumerics."""
    return prefix + "-" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Deploy:
    id: str
    status: DeployStatus
    commit_id: str
    commit_message: str
    trigger: str
    env: dict[str, str]
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    finished_at: str | None = None

    def set_status(self, status: DeployStatus) -> None:
        self.status = status
        self.updated_at = now_iso()
        if status not in IN_PROGRESS:
            self.finished_at = self.updated_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "commit": {
                "id": self.commit_id,
                "message": self.commit_message,
                "createdAt": self.created_at,
            },
            "status": self.status,
            "trigger": self.trigger,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "finishedAt": self.finished_at,
        }


@dataclass
class Service:
    id: str
    name: str
    kind: Literal["instance", "edge"]
    url: str
    port: int
    number: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    deploys: list[Deploy] = field(default_factory=list)  # newest first
    suspended: bool = False
    # Sandbox-only: health timeout (seconds) of the next deploy, which will never get healthy.
    fail_next_deploy: float | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    deploy_task: asyncio.Task[None] | None = None

    @property
    def deploying(self) -> bool:
        return self.deploy_task is not None and not self.deploy_task.done()

    def live_deploy(self) -> Deploy | None:
        return next((d for d in self.deploys if d.status == "live"), None)

    def to_json(self) -> dict[str, Any]:
        runtime = "docker" if self.kind == "edge" else "node"
        return {
            "id": self.id,
            "name": self.name,
            "type": "web_service",
            "ownerId": OWNER_ID,
            "slug": self.name,
            "repo": "https://github.com/koinonia/koinonia-sms-backend",
            "branch": "main",
            "autoDeploy": "yes",
            "rootDir": "",
            "suspended": "suspended" if self.suspended else "not_suspended",
            "suspenders": ["user"] if self.suspended else [],
            "notifyOnFail": "default",
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "dashboardUrl": f"https://dashboard.render.com/web/{self.id}",
            "serviceDetails": {
                "env": runtime,
                "runtime": runtime,
                "plan": "starter" if self.kind == "edge" else "standard",
                "region": "oregon",
                "numInstances": 1,
                "healthCheckPath": "/_edge/health" if self.kind == "edge" else "/health",
                "url": self.url,
                "openPorts": [{"port": self.port, "protocol": "TCP"}],
                "pullRequestPreviewsEnabled": "no",
            },
        }


class Backend(Protocol):
    """What the control plane drives: the supervisor's real processes."""

    services: dict[str, Service]

    async def suspend(self, service: Service) -> None: ...
    async def resume(self, service: Service) -> None: ...
    async def restart(self, service: Service) -> None: ...
    async def run_deploy(self, service: Service, deploy: Deploy, fail: float | None) -> None: ...


def _error(status: int, ident: str, message: str) -> web.HTTPException:
    cls: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
    }
    return cls[status](
        text=json.dumps({"id": ident, "message": message}), content_type="application/json"
    )


def _page(request: web.Request, key: str, items: list[tuple[str, dict[str, Any]]]) -> web.Response:
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise _error(400, "invalid_limit", "limit must be an integer between 1 and 100") from None
    if not 1 <= limit <= 100:
        raise _error(400, "invalid_limit", "limit must be an integer between 1 and 100")
    start = 0
    cursor = request.query.get("cursor")
    if cursor:
        cursors = [c for c, _ in items]
        if cursor not in cursors:
            raise _error(400, "invalid_cursor", "unknown cursor")
        start = cursors.index(cursor) + 1
    return web.json_response([{"cursor": c, key: obj} for c, obj in items[start : start + limit]])


def _sandbox_cursor(value: str) -> str:
    # Opaque to clients, as on Render; stable for a given item.
    return value.replace("srv-", "").replace("dep-", "") or value


class _Routes:
    """The handlers; every one resolves its service first (404) after the auth middleware (401)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.background: set[asyncio.Task[None]] = set()

    def service_of(self, request: web.Request) -> Service:
        ident = request.match_info["service_id"]
        service = self.backend.services.get(ident)
        if service is None:
            raise _error(404, "not_found", f"service {ident} not found")
        return service

    async def list_services(self, request: web.Request) -> web.Response:
        names = request.query.getall("name", [])
        types = request.query.getall("type", [])
        chosen = [
            s
            for s in self.backend.services.values()
            if (not names or s.name in names) and (not types or "web_service" in types)
        ]
        return _page(request, "service", [(_sandbox_cursor(s.id), s.to_json()) for s in chosen])

    async def get_service(self, request: web.Request) -> web.Response:
        return web.json_response(self.service_of(request).to_json())

    async def list_deploys(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        items = [(_sandbox_cursor(d.id), d.to_json()) for d in service.deploys]
        return _page(request, "deploy", items)

    async def get_deploy(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        ident = request.match_info["deploy_id"]
        for deploy in service.deploys:
            if deploy.id == ident:
                return web.json_response(deploy.to_json())
        raise _error(404, "not_found", f"deploy {ident} not found for service {service.id}")

    async def create_deploy(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        body = await _json_body(request, required=False)
        if service.deploying or service.busy.locked():
            raise _error(409, "conflict", f"a deploy is already in progress for {service.id}")
        if service.suspended:
            raise _error(409, "conflict", f"service {service.id} is suspended; resume it first")
        commit = body.get("commitId")
        if not (isinstance(commit, str) and commit):
            # The branch head: the sandbox's branch never moves, so it is what the service runs.
            commit = service.deploys[0].commit_id if service.deploys else secrets.token_hex(20)
        deploy = Deploy(
            id=render_id("dep"),
            status="created",
            commit_id=commit,
            commit_message=f"sandbox deploy #{len(service.deploys) + 1}",
            trigger="api",
            env=dict(service.env),
        )
        service.deploys.insert(0, deploy)
        fail, service.fail_next_deploy = service.fail_next_deploy, None
        service.deploy_task = asyncio.create_task(self.backend.run_deploy(service, deploy, fail))
        return web.json_response(deploy.to_json(), status=201)

    def lifecycle(
        self, action: Callable[[Service], Coroutine[Any, Any, None]], suspended: bool | None
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            service = self.service_of(request)
            if service.deploying:
                raise _error(409, "conflict", f"a deploy is in progress for {service.id}")
            if suspended is not None:
                service.suspended = suspended
                service.updated_at = now_iso()
            pending: asyncio.Task[None] = asyncio.create_task(action(service))
            self.background.add(pending)
            pending.add_done_callback(self.background.discard)
            return web.Response(status=202)

        return handler

    async def list_env(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        items = [(k, {"key": k, "value": v}) for k, v in service.env.items()]
        return _page(request, "envVar", items)

    async def put_env(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        key = request.match_info["key"]
        if not _ENV_KEY.match(key):
            raise _error(400, "invalid_key", "not a valid environment variable name")
        body = await _json_body(request, required=True)
        value = body.get("value")
        if not isinstance(value, str):
            raise _error(400, "invalid_body", 'expected {"value": "<string>"}')
        service.env[key] = value
        service.updated_at = now_iso()
        return web.json_response({"key": key, "value": value})

    async def fail_next(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        body = await _json_body(request, required=False)
        timeout = body.get("healthTimeoutSeconds", FAIL_HEALTH_TIMEOUT)
        if not isinstance(timeout, int | float) or not 0 < timeout <= 300:
            raise _error(400, "invalid_body", "healthTimeoutSeconds must be in (0, 300]")
        service.fail_next_deploy = float(timeout)
        return web.json_response(
            {"id": service.id, "failNextDeploy": True, "healthTimeoutSeconds": timeout}
        )


async def _json_body(request: web.Request, *, required: bool) -> dict[str, Any]:
    if not request.can_read_body:
        if required:
            raise _error(400, "invalid_body", "a JSON body is required")
        return {}
    try:
        parsed = await request.json()
    except ValueError:
        raise _error(400, "invalid_body", "request body is not JSON") from None
    if not isinstance(parsed, dict):
        raise _error(400, "invalid_body", "expected a JSON object")
    return parsed


def create_control_plane(backend: Backend, token: str) -> web.Application:
    """The aiohttp application serving the Render-shaped API over `backend`."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise _error(401, "unauthorized", "invalid or missing API key")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.content_type == "application/json":
                raise
            # The router's own 404/405 (unknown path or method): JSON like every other error.
            ident = "not_found" if exc.status == 404 else "invalid_request"
            return web.json_response(
                {"id": ident, "message": f"{request.method} {request.path}: {exc.reason}"},
                status=exc.status,
            )

    routes = _Routes(backend)
    app = web.Application(middlewares=[auth])
    svc = "/v1/services/{service_id}"
    app.router.add_get("/v1/services", routes.list_services)
    app.router.add_get(svc, routes.get_service)
    app.router.add_get(svc + "/deploys", routes.list_deploys)
    app.router.add_post(svc + "/deploys", routes.create_deploy)
    app.router.add_get(svc + "/deploys/{deploy_id}", routes.get_deploy)
    app.router.add_post(svc + "/suspend", routes.lifecycle(backend.suspend, True))
    app.router.add_post(svc + "/resume", routes.lifecycle(backend.resume, False))
    app.router.add_post(svc + "/restart", routes.lifecycle(backend.restart, None))
    app.router.add_get(svc + "/env-vars", routes.list_env)
    app.router.add_put(svc + "/env-vars/{key}", routes.put_env)
    app.router.add_post("/v1/_sandbox/services/{service_id}/fail-next-deploy", routes.fail_next)
    return app
