"""The sandbox control plane: the subset of Render's REST API (docs/sandbox.md) that the day-2
commands and the provider use, answered with Render's JSON shapes and backed by the sandbox's
real processes.

The source of truth is Render's published OpenAPI reference as vendored in
cloudy-sky-software/pulumi-render (provider/cmd/pulumi-gen-render/openapi.yml, "Render Public
API" 1.0.0); tests/contract/schemas/*.json are generated from it and every answer here is
validated against them (tests/contract/).

    GET  /v1/services?name=&type=&limit=&cursor=       [{"cursor", "service"}]
    POST /v1/services                                  201 {"service", "deployId"}: the first
                                                       deploy starts now, with the env given here
    GET  /v1/services/{id}
    GET  /v1/services/{id}/deploys?limit=&cursor=      [{"cursor", "deploy"}], newest first
    POST /v1/services/{id}/deploys                     201 deploy (409 if one is in progress)
    GET  /v1/services/{id}/deploys/{deployId}
    POST /v1/services/{id}/suspend | resume            202 (spec: 202, no body)
    POST /v1/services/{id}/restart                     200 (spec: 200 "Service restarted")
    GET  /v1/services/{id}/env-vars?limit=&cursor=     [{"cursor", "envVar": {"key", "value"}}]
    PUT  /v1/services/{id}/env-vars                    replace all (pulumi-render's
                                                       EnvVarsForService); restarts nothing
    PUT  /v1/services/{id}/env-vars/{key}              {"key", "value"}; restarts nothing
    GET  /v1/postgres[/{id}], /v1/key-value[/{id}]     the sandbox's datastores, as Render
                                                       describes them (datastores_api.py)
    POST /v1/_sandbox/services/{id}/fail-next-deploy   sandbox-only: the next deploy of this
                                                       service never gets healthy (body, optional:
                                                       {"healthTimeoutSeconds": 3})

Every route needs `Authorization: Bearer <token>` (401 otherwise); unknown ids are 404; errors
are `{"id": ..., "message": ...}` like Render's. Env vars apply to the NEXT deploy, as on Render:
a deploy takes the service's env when it starts and its process runs with exactly that.

Rate limits (https://api-docs.render.com/reference/rate-limiting): every answer carries
`Ratelimit-Limit`, `Ratelimit-Remaining` and `Ratelimit-Reset` ("time at which the current rate
limit window resets in UTC Epoch Seconds"); deploy, suspend and resume are limited to 10 per
minute PER SERVICE and POST /services to 20 per hour, and past that the answer is 429 with the
same headers. The account-wide buckets (GET 400/minute, other writes 30/minute) are counted in
the headers but not enforced: tests poll faster than a person would, and throttling them
would slow every test without exercising anything the per-service limit does not.

Nothing is pushed to the branch in the sandbox, so a deploy builds the commit the service
already runs (Render's "deploy latest commit"), unless the request names a `commitId`: instances
that started on one commit stay on one commit.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from aiohttp import web

from koinonia_infra.sandbox.timing import TimingProfile

DeployStatus = Literal[
    "created", "build_in_progress", "update_in_progress", "live", "deactivated",
    "update_failed", "canceled",
]  # fmt: skip
IN_PROGRESS: tuple[DeployStatus, ...] = ("created", "build_in_progress", "update_in_progress")
OWNER_ID = "tea-sandbox0000000000000"
# The spec's `deploy.trigger` enum (the schema `deploy`, property `trigger`).
DeployTrigger = Literal[
    "api", "blueprint_sync", "deploy_hook", "deployed_by_render", "manual", "other",
    "new_commit", "rollback", "service_resumed", "service_updated",
]  # fmt: skip
REPO = "https://github.com/koinonia/koinonia-sms-backend"
# A deploy told to fail is given up on sooner than a real one: the outcome is the same.
FAIL_HEALTH_TIMEOUT = 3.0
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALPHABET = string.ascii_lowercase + string.digits


def render_id(prefix: str) -> str:
    """Render-like ids: `srv-` / `dep-` followed by 20 lowercase alphanumerics."""
    return prefix + "-" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def render_slug(name: str) -> str:
    """A slug shaped like Render's: the name, a dash and 4 lowercase alphanumerics (so it is
    never equal to the name). Render's docs show internal hostnames this way: the service
    address `elasticsearch-2j3e:9200` (https://render.com/docs/private-network) and
    `elastic-qeqj:10000` (https://render.com/docs/private-services). The spec only says `slug`
    is a string (schema `service`); that the hostname IS the slug is for a real account to
    confirm."""
    return f"{name}-" + "".join(secrets.choice(_ALPHABET) for _ in range(4))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Deploy:
    id: str
    status: DeployStatus
    commit_id: str
    commit_message: str
    trigger: DeployTrigger
    env: dict[str, str]
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    finished_at: str | None = None
    # Image-backed services (the edge) deploy an image reference, not a commit.
    image: str | None = None

    def set_status(self, status: DeployStatus) -> None:
        self.status = status
        self.updated_at = now_iso()
        if status != "created" and self.started_at is None:
            self.started_at = self.updated_at
        if status not in IN_PROGRESS:
            self.finished_at = self.updated_at

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id}
        if self.image is not None:
            # Spec: `image` is "not present for Git-backed deploys", `commit` is for those.
            data["image"] = {"ref": self.image}
        else:
            data["commit"] = {
                "id": self.commit_id,
                "message": self.commit_message,
                "createdAt": self.created_at,
            }
        data.update(
            status=self.status,
            trigger=self.trigger,
            createdAt=self.created_at,
            updatedAt=self.updated_at,
        )
        # The spec types these as date-time strings, not nullable: absent until they happen.
        if self.started_at is not None:
            data["startedAt"] = self.started_at
        if self.finished_at is not None:
            data["finishedAt"] = self.finished_at
        return data


@dataclass
class Service:
    id: str
    name: str
    kind: Literal["instance", "edge"]
    url: str
    port: int
    number: int | None = None
    slug: str = ""
    # Image-backed (the edge): `imagePath` instead of repo and branch.
    image: str | None = None
    start_command: str = ""
    build_command: str = ""
    health_check_path: str = "/health"
    plan: str = "standard"
    env: dict[str, str] = field(default_factory=dict)
    deploys: list[Deploy] = field(default_factory=list)  # newest first
    suspended: bool = False
    # A suspend accepted (202) but not yet in effect (the render profile): a resume cancels it.
    suspend_pending: bool = False
    # Sandbox-only: health timeout (seconds) of the next deploy, which will never get healthy.
    fail_next_deploy: float | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    deploy_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if not self.slug:
            self.slug = render_slug(self.name)

    @property
    def deploying(self) -> bool:
        return self.deploy_task is not None and not self.deploy_task.done()

    def live_deploy(self) -> Deploy | None:
        return next((d for d in self.deploys if d.status == "live"), None)

    def new_deploy(self, trigger: DeployTrigger, commit_id: str, message: str) -> Deploy:
        """A deploy that starts now: it takes the service's env as it is at this moment."""
        return Deploy(
            id=render_id("dep"),
            status="created",
            commit_id=commit_id,
            commit_message=message,
            trigger=trigger,
            env=dict(self.env),
            image=self.image,
        )

    def to_json(self) -> dict[str, Any]:
        # Required fields of the spec's `service` and `webServiceDetails` schemas (see
        # tests/contract/schemas/service.json and web-service-details.json).
        runtime = "image" if self.image is not None else "node"
        env_specific: dict[str, str] = (
            # `envSpecificDetails` is oneOf dockerDetails | nativeEnvironmentDetails; an image
            # has no Dockerfile or context, only the command it runs.
            {"dockerCommand": self.start_command, "dockerContext": "", "dockerfilePath": ""}
            if self.image is not None
            else {"buildCommand": self.build_command, "startCommand": self.start_command}
        )
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": "web_service",
            "ownerId": OWNER_ID,
            "slug": self.slug,
            "autoDeploy": "no" if self.image is not None else "yes",
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
                "envSpecificDetails": env_specific,
                "plan": self.plan,
                "buildPlan": "starter",
                "region": "oregon",
                "numInstances": 1,
                "healthCheckPath": self.health_check_path,
                # The spec's default (schema maxShutdownDelaySeconds), as Render reports it.
                "maxShutdownDelaySeconds": 30,
                "url": self.url,
                "openPorts": [{"port": self.port, "protocol": "TCP"}],
                "pullRequestPreviewsEnabled": "no",
            },
        }
        if self.image is not None:
            data["imagePath"] = self.image
        else:
            data.update(repo=REPO, branch="main")
        return data


class Backend(Protocol):
    """What the control plane drives: the supervisor's real processes."""

    services: dict[str, Service]
    # Whether resume is a deploy (Render) or a process start (the fast profile), and how long
    # a suspend takes to act: koinonia_infra/sandbox/timing.py.
    timing: TimingProfile

    async def suspend(self, service: Service) -> None: ...
    async def resume(self, service: Service) -> None: ...
    async def restart(self, service: Service) -> None: ...
    async def run_deploy(self, service: Service, deploy: Deploy, fail: float | None) -> None: ...
    def add_service(self, service: Service) -> None:
        """Give a service created through POST /services its place (port, address)."""


def _error(status: int, ident: str, message: str) -> web.HTTPException:
    cls: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        429: web.HTTPTooManyRequests,
    }
    return cls[status](
        text=json.dumps({"id": ident, "message": message}), content_type="application/json"
    )


@dataclass(frozen=True)
class Bucket:
    """One of Render's documented rate limits: `limit` requests per `window` seconds."""

    name: str
    limit: int
    window: float
    enforced: bool


# https://api-docs.render.com/reference/rate-limiting ("deploys which is per service").
PER_SERVICE = Bucket("deploy-suspend-resume", 10, 60.0, enforced=True)
CREATE_SERVICE = Bucket("create-service", 20, 3600.0, enforced=True)
OTHER_WRITE = Bucket("write", 30, 60.0, enforced=False)
READ = Bucket("read", 400, 60.0, enforced=False)


class RateLimiter:
    """Sliding windows per (bucket, scope); `clock` is wall time (the Reset header is epoch)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def take(self, bucket: Bucket, scope: str) -> tuple[dict[str, str], bool]:
        """Count one request; (the Ratelimit-* headers, whether it is over the limit)."""
        now = self.clock()
        hits = self._hits.setdefault((bucket.name, scope), deque())
        while hits and hits[0] <= now - bucket.window:
            hits.popleft()
        over = bucket.enforced and len(hits) >= bucket.limit
        if not over:
            hits.append(now)
        reset = (hits[0] if hits else now) + bucket.window
        headers = {
            "Ratelimit-Limit": str(bucket.limit),
            "Ratelimit-Remaining": str(max(0, bucket.limit - len(hits))),
            "Ratelimit-Reset": str(int(reset + 0.999)),
        }
        return headers, over


_PER_SERVICE_ACTIONS = re.compile(r"^/v1/services/([^/]+)/(deploys|suspend|resume)$")


def _bucket_of(request: web.Request) -> tuple[Bucket, str]:
    if request.method in ("GET", "HEAD"):
        return READ, "account"
    per_service = _PER_SERVICE_ACTIONS.match(request.path)
    if request.method == "POST" and per_service:
        return PER_SERVICE, per_service.group(1)
    if request.method == "POST" and request.path == "/v1/services":
        return CREATE_SERVICE, "account"
    return OTHER_WRITE, "account"


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
            commit = None
        deploy = self.start_deploy(service, "api", commit)
        return web.json_response(deploy.to_json(), status=201)

    def start_deploy(
        self, service: Service, trigger: DeployTrigger, commit: str | None = None
    ) -> Deploy:
        # The branch head: the sandbox's branch never moves, so it is what the service runs.
        if commit is None:
            commit = service.deploys[0].commit_id if service.deploys else secrets.token_hex(20)
        deploy = service.new_deploy(
            trigger, commit, f"sandbox deploy #{len(service.deploys) + 1} ({trigger})"
        )
        service.deploys.insert(0, deploy)
        fail, service.fail_next_deploy = service.fail_next_deploy, None
        service.deploy_task = asyncio.create_task(self.backend.run_deploy(service, deploy, fail))
        return deploy

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        pending: asyncio.Task[None] = asyncio.create_task(coro)
        self.background.add(pending)
        pending.add_done_callback(self.background.discard)

    def _refuse_while_deploying(self, service: Service) -> None:
        if service.deploying:
            raise _error(409, "conflict", f"a deploy is in progress for {service.id}")

    async def suspend(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        self._refuse_while_deploying(service)
        delay = self.backend.timing.suspend_delay_seconds

        async def act() -> None:
            # Render answers 202 and suspends asynchronously: the service reads `suspended`
            # only once it has taken effect (the render profile makes that take a while).
            await asyncio.sleep(delay)
            if not service.suspend_pending:
                return  # resumed meanwhile
            service.suspend_pending = False
            service.suspended = True
            service.updated_at = now_iso()
            await self.backend.suspend(service)

        if delay:
            service.suspend_pending = True
            self._later(act())
        else:
            service.suspended = True
            service.updated_at = now_iso()
            self._later(self.backend.suspend(service))
        return web.Response(status=202)

    async def resume(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        self._refuse_while_deploying(service)
        service.suspend_pending = False
        service.suspended = False
        service.updated_at = now_iso()
        if self.backend.timing.resume_creates_deploy:
            # On Render a resume is a deploy (trigger `service_resumed`, a value of the spec's
            # deploy.trigger enum) that builds and boots like any other.
            self.start_deploy(service, "service_resumed")
        else:
            self._later(self.backend.resume(service))
        return web.Response(status=202)

    async def restart(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        self._refuse_while_deploying(service)
        self._later(self.backend.restart(service))
        # The spec answers restart with 200 "Service restarted" (not 202 like suspend/resume).
        return web.Response(status=200)

    async def create_service(self, request: web.Request) -> web.Response:
        """POST /services (spec schema servicePOST): the service and its first deploy, which
        starts now with the env given here. Env vars PUT afterwards wait for the next deploy:
        the race pulumi-render runs into (it creates WebService, then EnvVarsForService)."""
        body = await _json_body(request, required=True)
        name, kind, owner = body.get("name"), body.get("type"), body.get("ownerId")
        if not (isinstance(name, str) and name and isinstance(owner, str) and owner):
            raise _error(400, "invalid_body", "name and ownerId are required")
        if kind != "web_service":
            raise _error(400, "invalid_body", "the sandbox creates web_service services only")
        env: dict[str, str] = {}
        for item in body.get("envVars") or []:
            key, value = _env_item(item)
            env[key] = value
        details = body.get("serviceDetails") or {}
        if not isinstance(details, dict):
            raise _error(400, "invalid_body", "serviceDetails must be an object")
        specific = details.get("envSpecificDetails") or {}
        service = Service(
            id=render_id("srv"),
            name=name,
            kind="instance",
            url="",
            port=0,
            env=env,
            start_command=str(specific.get("startCommand", "")),
            build_command=str(specific.get("buildCommand", "")),
            health_check_path=str(details.get("healthCheckPath") or "/health"),
            plan=str(details.get("plan") or "starter"),
        )
        self.backend.add_service(service)
        self.backend.services[service.id] = service
        deploy = self.start_deploy(service, "new_commit")
        return web.json_response({"service": service.to_json(), "deployId": deploy.id}, status=201)

    async def list_env(self, request: web.Request) -> web.Response:
        service = self.service_of(request)
        items = [(k, {"key": k, "value": v}) for k, v in service.env.items()]
        return _page(request, "envVar", items)

    async def put_all_env(self, request: web.Request) -> web.Response:
        """PUT /services/{id}/env-vars: replaces every env var (the body is the spec's
        envVarInputArray, what pulumi-render's EnvVarsForService sends). Nothing restarts."""
        service = self.service_of(request)
        try:
            parsed = await request.json()
        except ValueError:
            raise _error(400, "invalid_body", "request body is not JSON") from None
        if not isinstance(parsed, list):
            raise _error(400, "invalid_body", 'expected [{"key": …, "value": …}, …]')
        env: dict[str, str] = {}
        for item in parsed:
            key, value = _env_item(item)
            env[key] = value
        service.env = env
        service.updated_at = now_iso()
        items = [(k, {"key": k, "value": v}) for k, v in env.items()]
        return web.json_response([{"cursor": c, "envVar": obj} for c, obj in items])

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


def _env_item(item: Any) -> tuple[str, str]:
    """One envVarInput: {"key", "value"} or {"key", "generateValue": true} (spec)."""
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise _error(400, "invalid_body", 'each env var needs a "key"')
    key = item["key"]
    if not _ENV_KEY.match(key):
        raise _error(400, "invalid_key", f"{key!r} is not a valid environment variable name")
    if item.get("generateValue") is True:
        return key, secrets.token_urlsafe(24)
    value = item.get("value")
    if not isinstance(value, str):
        raise _error(400, "invalid_body", f'env var {key}: expected "value": "<string>"')
    return key, value


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


def create_control_plane(
    backend: Backend, token: str, *, limiter: RateLimiter | None = None
) -> web.Application:
    """The aiohttp application serving the Render-shaped API over `backend`."""
    expected = f"Bearer {token}".encode()
    limits = limiter or RateLimiter()

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise _error(401, "unauthorized", "invalid or missing API key")
        bucket, scope = _bucket_of(request)
        headers, over = limits.take(bucket, scope)
        try:
            if over:
                raise _error(
                    429,
                    "rate_limited",
                    f"rate limit exceeded: {bucket.limit} per {bucket.window:g}s"
                    + (f" for service {scope}" if bucket is PER_SERVICE else ""),
                )
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.content_type != "application/json":
                # The router's own 404/405 (unknown path or method): JSON like every other error.
                ident = "not_found" if exc.status == 404 else "invalid_request"
                return web.json_response(
                    {"id": ident, "message": f"{request.method} {request.path}: {exc.reason}"},
                    status=exc.status,
                    headers=headers,
                )
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    routes = _Routes(backend)
    app = web.Application(middlewares=[auth])
    svc = "/v1/services/{service_id}"
    app.router.add_get("/v1/services", routes.list_services)
    app.router.add_post("/v1/services", routes.create_service)
    app.router.add_get(svc, routes.get_service)
    app.router.add_get(svc + "/deploys", routes.list_deploys)
    app.router.add_post(svc + "/deploys", routes.create_deploy)
    app.router.add_get(svc + "/deploys/{deploy_id}", routes.get_deploy)
    app.router.add_post(svc + "/suspend", routes.suspend)
    app.router.add_post(svc + "/resume", routes.resume)
    app.router.add_post(svc + "/restart", routes.restart)
    app.router.add_get(svc + "/env-vars", routes.list_env)
    app.router.add_put(svc + "/env-vars", routes.put_all_env)
    app.router.add_put(svc + "/env-vars/{key}", routes.put_env)
    app.router.add_post("/v1/_sandbox/services/{service_id}/fail-next-deploy", routes.fail_next)
    from koinonia_infra.sandbox.datastores_api import register_datastores  # imports this module

    register_datastores(app, getattr(backend, "datastores", None))
    from koinonia_infra.sandbox.observability import register_observability

    register_observability(app, getattr(backend, "observer", None))
    return app
