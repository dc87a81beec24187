"""Render REST API client (sync httpx): the subset `status`, `verify`, `drill failover`, `rollout`
and `up` use. The same client talks to the sandbox's control plane, which answers the same API.

Errors are translated here, never by callers:

    RenderApiError       404 (names the service or deploy id), 409 (a deploy is already in
    │                    progress), other 4xx, 429/5xx past the retry deadline, a timeout,
    │                    an answer that is not the expected JSON
    ├── ApiKeyRejected   401/403: the key was rejected (never echoed)
    └── ApiUnreachable   the connection was refused or failed (names the host)
    OperationFailed      `wait_for_deploy` reached its deadline (names the service, last status)
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from koinonia_infra.descriptor import DEFAULT_RENDER_API_URL, Descriptor
from koinonia_infra.errors import OperationFailed, RenderApiError

DEPLOY_IN_PROGRESS: Final = frozenset(
    {"created", "queued", "build_in_progress", "update_in_progress", "pre_deploy_in_progress"}
)
DEPLOY_SUCCESS: Final = frozenset({"live"})
DEPLOY_FAILURE: Final = frozenset(
    {"build_failed", "update_failed", "pre_deploy_failed", "canceled"}
)
# `deactivated` is a deploy that was live and has been superseded: terminal, not a failure.
DEPLOY_TERMINAL: Final = DEPLOY_SUCCESS | DEPLOY_FAILURE | {"deactivated"}

API_KEY_ENV_VARS: Final = ("RENDER_API_KEY", "RENDER_APIKEY")
# An explicit choice of API endpoint (like `--render-api-url`): the user's key may go there.
API_URL_ENV_VAR: Final = "RENDER_API_URL"
PAGE_LIMIT: Final = 100

M = TypeVar("M", bound=BaseModel)
Sleep = Callable[[float], None]
Clock = Callable[[], float]


class ApiKeyRejected(RenderApiError):
    """The API answered 401/403: a command can stop here rather than repeat it per service."""


class ApiUnreachable(RenderApiError):
    """No answer from the API host at all."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ServiceDetails(_Model):
    url: str | None = None


class Service(_Model):
    id: str
    name: str
    slug: str | None = None
    suspended: Literal["suspended", "not_suspended"] = "not_suspended"
    type: str | None = None
    service_details: ServiceDetails = Field(default_factory=ServiceDetails)

    @property
    def url(self) -> str | None:
        return self.service_details.url

    @property
    def is_suspended(self) -> bool:
        return self.suspended == "suspended"


class Deploy(_Model):
    # The reference requires only `id` (schema `deploy` in Render's OpenAPI spec, as vendored in
    # cloudy-sky-software/pulumi-render provider/cmd/pulumi-gen-render/openapi.yml).
    id: str
    status: str = "unknown"
    # One of the spec's deploy.trigger enum: `service_resumed` marks the deploy a resume starts.
    trigger: str | None = None
    commit_id: str | None = None
    commit_message: str | None = None
    image_ref: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten_commit(cls, data: Any) -> Any:
        # Render nests the commit: {"commit": {"id": …, "message": …, "createdAt": …}}.
        if isinstance(data, dict) and isinstance(data.get("commit"), dict):
            commit = data["commit"]
            data = {**data}
            data.setdefault("commitId", commit.get("id"))
            data.setdefault("commitMessage", commit.get("message"))
        # Image-backed services deploy an image: {"image": {"ref", "sha", …}}, no commit.
        if isinstance(data, dict) and isinstance(data.get("image"), dict):
            data = {**data, "imageRef": data["image"].get("ref")}
        return data

    @property
    def in_progress(self) -> bool:
        return self.status in DEPLOY_IN_PROGRESS

    @property
    def succeeded(self) -> bool:
        return self.status in DEPLOY_SUCCESS

    @property
    def failed(self) -> bool:
        return self.status in DEPLOY_FAILURE


def _retry_after_seconds(response: httpx.Response, now_epoch: float) -> float | None:
    """Seconds the server asks us to wait, from `Retry-After` or `Ratelimit-Reset`."""
    for header in ("Retry-After", "Ratelimit-Reset", "X-Ratelimit-Reset"):
        raw = response.headers.get(header)
        if not raw:
            continue
        try:
            value = float(raw.strip())
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if header == "Retry-After" else None
            if parsed is None:
                continue
            return max(0.0, parsed.timestamp() - now_epoch)
        # A reset header is either seconds from now or an epoch timestamp; both exist in the wild.
        if value > 1_000_000_000:
            value -= now_epoch
        return max(0.0, value)
    return None


@dataclass(frozen=True)
class ApiAccess:
    """Where the Render API is called and with which key; `repr` never shows the key."""

    url: str
    key: str = field(repr=False)


def api_access(descriptor: Descriptor | None, flag_url: str | None = None) -> ApiAccess | None:
    """The one rule, for every command, deciding which key goes to which URL (None: no key).

    - A descriptor that carries its own token (the sandbox writes its control plane's into its
      mode-0600 state dir) sends that token to its own `renderApiUrl`, or to `flag_url`.
    - Otherwise the user's key (`RENDER_API_KEY` / `RENDER_APIKEY`) goes to `flag_url`
      (`--render-api-url`), else `$RENDER_API_URL`, else Render's API. Never to a URL read from
      a descriptor: a descriptor from a pull request, an artifact or a chat message could name a
      server that collects the production key.
    """
    if descriptor is not None and descriptor.render_api_key is not None:
        own = descriptor.render_api_key.get_secret_value()
        if own:
            url = flag_url or descriptor.render_api_url or DEFAULT_RENDER_API_URL
            return ApiAccess(url, own)
    key = next((os.environ[v] for v in API_KEY_ENV_VARS if os.environ.get(v)), None)
    if not key:
        return None
    url = flag_url or os.environ.get(API_URL_ENV_VAR) or DEFAULT_RENDER_API_URL
    return ApiAccess(url, key)


class RenderClient:
    """Bearer-authenticated client; 429 and 5xx are retried with backoff up to `retry_deadline`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        retry_deadline: float = 60.0,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.base_url = (base_url or DEFAULT_RENDER_API_URL).rstrip("/")
        self.host = httpx.URL(self.base_url).host or self.base_url
        self.retry_deadline = retry_deadline
        self._sleep = sleep
        self._clock = clock
        # Epoch seconds: Render's `Ratelimit-Reset` is "the time at which the current rate limit
        # window resets in UTC Epoch Seconds" (https://api-docs.render.com/reference/rate-limiting).
        self._wall = wall
        headers = {"Accept": "application/json", "User-Agent": "koinonia-infra"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def for_descriptor(
        cls, descriptor: Descriptor, base_url: str | None = None, **kwargs: Any
    ) -> RenderClient | None:
        """Client for a deployment, or None when no API key is available (see `api_access`)."""
        access = api_access(descriptor, base_url)
        if access is None:
            return None
        return cls(access.url, access.key, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RenderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        service_id: str | None = None,
        not_found: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        deadline = self._clock() + self.retry_deadline
        attempt = 0
        connect_failures = 0
        what = f"{method} {path}"
        while True:
            try:
                response = self._http.request(method, path.lstrip("/"), params=params, json=json)
            except httpx.ConnectError as exc:
                # Nothing was sent, so even a POST is safe to repeat — but only briefly: a refused
                # connection usually means a wrong URL, not a blip.
                connect_failures += 1
                if connect_failures >= 3 or self._clock() + 1.0 > deadline:
                    raise ApiUnreachable(
                        f"Render API at {self.host} unreachable: {_reason(exc)}"
                    ) from None
                self._sleep(0.25 * connect_failures)
                continue
            except httpx.TimeoutException:
                # A read is safe to repeat; a write may have been applied, so it is not.
                wait = self._backoff(attempt, None)
                if method != "GET" or wait > deadline - self._clock():
                    raise RenderApiError(f"Render API at {self.host} timed out ({what})") from None
                self._sleep(wait)
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                raise ApiUnreachable(
                    f"Render API at {self.host}: {what} failed: {_reason(exc)}"
                ) from None
            status = response.status_code
            if status == 429 or status >= 500:
                wait = self._backoff(attempt, response)
                remaining = deadline - self._clock()
                if wait > remaining:
                    label = "rate limited (429)" if status == 429 else f"HTTP {status}"
                    waited = self.retry_deadline - max(0.0, remaining)
                    raise RenderApiError(
                        f"Render API at {self.host}: {what} still {label} after {attempt + 1} "
                        f"attempt(s) over {waited:.0f}s; the next retry (in {wait:.0f}s) would "
                        f"pass the {self.retry_deadline:g}s retry deadline"
                    )
                self._sleep(wait)
                attempt += 1
                continue
            if status >= 400:
                raise self._error(response, what, service_id, not_found)
            return response

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        asked = None if response is None else _retry_after_seconds(response, self._wall())
        if asked is not None:
            # The server knows when the window resets; a little jitter avoids a thundering herd.
            return asked + random.uniform(0, min(1.0, 0.1 + asked * 0.1))
        # "Equal jitter" on an exponential base: parallel clients do not retry in lockstep, and
        # no retry comes sooner than half the base.
        exp = min(30.0, 0.5 * 2.0**attempt)
        return exp / 2 + random.uniform(0, exp / 2)

    def _error(
        self, response: httpx.Response, what: str, service_id: str | None, not_found: str | None
    ) -> RenderApiError:
        status = response.status_code
        if status in (401, 403):
            hint = "set RENDER_API_KEY (or RENDER_APIKEY) to a valid key"
            return ApiKeyRejected(
                f"the Render API key was rejected by {self.host} (HTTP {status}); {hint}"
            )
        if status == 404:
            subject = not_found or (f"Render service {service_id}" if service_id else None)
            if subject is not None:
                return RenderApiError(f"{subject} not found at {self.host}")
            return RenderApiError(f"Render API at {self.host}: {what}: not found")
        if status == 409:
            target = service_id or what
            if "suspend" in _api_message(response).lower():
                # The other conflict a deploy meets: say which, rather than blame a deploy.
                return RenderApiError(f"{what} refused: {target} is suspended; resume it first")
            return RenderApiError(f"a deploy is already in progress for {target}")
        return RenderApiError(
            f"Render API at {self.host}: {what} refused (HTTP {status}): {_api_message(response)}"
        )

    def _get_json(
        self,
        path: str,
        *,
        service_id: str | None = None,
        not_found: str | None = None,
        **params: Any,
    ) -> Any:
        response = self._request(
            "GET", path, service_id=service_id, not_found=not_found, params=params or None
        )
        return _decode(response, f"GET {path}", self.host)

    def _paginate(
        self,
        path: str,
        key: str,
        *,
        service_id: str | None = None,
        limit: int | None = None,
        **params: Any,
    ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        seen = 0
        while True:
            page_limit = PAGE_LIMIT if limit is None else min(PAGE_LIMIT, limit - seen)
            query: dict[str, Any] = {**params, "limit": page_limit}
            if cursor:
                query["cursor"] = cursor
            page = self._get_json(path, service_id=service_id, **query)
            if not isinstance(page, list):
                raise RenderApiError(f"Render API at {self.host}: GET {path}: expected a list")
            for item in page:
                if not isinstance(item, dict) or not isinstance(item.get(key), dict):
                    raise RenderApiError(
                        f"Render API at {self.host}: GET {path}: item without {key!r}"
                    )
                yield item[key]
                seen += 1
                if limit is not None and seen >= limit:
                    return
            next_cursor = page[-1].get("cursor") if page else None
            if len(page) < page_limit or not next_cursor or next_cursor == cursor:
                return
            cursor = str(next_cursor)

    # -- services --------------------------------------------------------------------------

    def get_service(self, service_id: str) -> Service:
        data = self._get_json(f"/services/{service_id}", service_id=service_id)
        return _parse(Service, data, f"service {service_id}", self.host)

    def find_services(self, name: str) -> list[Service]:
        return [
            _parse(Service, item, f"services named {name}", self.host)
            for item in self._paginate("/services", "service", name=name)
        ]

    def suspend(self, service_id: str) -> None:
        self._request("POST", f"/services/{service_id}/suspend", service_id=service_id)

    def resume(self, service_id: str) -> None:
        self._request("POST", f"/services/{service_id}/resume", service_id=service_id)

    def env_vars(self, service_id: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for item in self._paginate(
            f"/services/{service_id}/env-vars", "envVar", service_id=service_id
        ):
            key, value = item.get("key"), item.get("value")
            if isinstance(key, str):
                result[key] = value if isinstance(value, str) else ""
        return result

    # -- adopt: raw reads of what production runs -------------------------------------------
    # Raw JSON on purpose: `adopt` compares these answers field by field with the shapes of
    # Render's spec (cloudy-sky-software/pulumi-render, openapi_generated.yml: service,
    # postgresDetail, keyValueDetail; list items wrap them as {"postgres"|"keyValue", "cursor"}).

    def service_json(self, service_id: str) -> dict[str, Any]:
        return _object(
            self._get_json(f"/services/{service_id}", service_id=service_id),
            f"GET /services/{service_id}",
            self.host,
        )

    def services_named(self, name: str) -> list[dict[str, Any]]:
        return list(self._paginate("/services", "service", name=name))

    def postgres_named(self, name: str) -> list[dict[str, Any]]:
        return list(self._paginate("/postgres", "postgres", name=name))

    def postgres_json(self, postgres_id: str) -> dict[str, Any]:
        data = self._get_json(
            f"/postgres/{postgres_id}", not_found=f"Render Postgres {postgres_id}"
        )
        return _object(data, f"GET /postgres/{postgres_id}", self.host)

    def key_values_named(self, name: str) -> list[dict[str, Any]]:
        return list(self._paginate("/key-value", "keyValue", name=name))

    def key_value_json(self, key_value_id: str) -> dict[str, Any]:
        data = self._get_json(
            f"/key-value/{key_value_id}", not_found=f"Render Key Value {key_value_id}"
        )
        return _object(data, f"GET /key-value/{key_value_id}", self.host)

    def env_var_keys(self, service_id: str) -> list[str]:
        """The keys only: callers that must never hold a value (adopt) never receive one."""
        return sorted(self.env_vars(service_id))

    # -- deploys ---------------------------------------------------------------------------

    def list_deploys(self, service_id: str, limit: int = 20) -> list[Deploy]:
        """Most recent first, as Render returns them."""
        return [
            _parse(Deploy, item, f"deploys of {service_id}", self.host)
            for item in self._paginate(
                f"/services/{service_id}/deploys", "deploy", service_id=service_id, limit=limit
            )
        ]

    def latest_deploy(self, service_id: str) -> Deploy | None:
        deploys = self.list_deploys(service_id, limit=1)
        return deploys[0] if deploys else None

    def get_deploy(self, service_id: str, deploy_id: str) -> Deploy:
        data = self._get_json(
            f"/services/{service_id}/deploys/{deploy_id}",
            service_id=service_id,
            not_found=f"deploy {deploy_id} of Render service {service_id}",
        )
        return _parse(Deploy, data, f"deploy {deploy_id} of {service_id}", self.host)

    def trigger_deploy(self, service_id: str) -> Deploy:
        path = f"/services/{service_id}/deploys"
        response = self._request("POST", path, service_id=service_id, json={})
        data = _decode(response, f"POST {path}", self.host) if response.content else None
        if isinstance(data, dict) and "id" in data:
            return _parse(Deploy, data, f"new deploy of {service_id}", self.host)
        # 202 "queued" answers may carry no body: the newest deploy is the one just queued.
        latest = self.latest_deploy(service_id)
        if latest is None:
            raise RenderApiError(f"Render API at {self.host}: no deploy recorded for {service_id}")
        return latest

    def wait_for_deploy(
        self,
        service_id: str,
        deploy_id: str | None,
        *,
        timeout: float,
        on_poll: Callable[[Deploy], None] | None = None,
    ) -> Deploy:
        """Poll until the deploy is terminal; a failed deploy is returned, the caller decides.

        `deploy_id=None` follows the service's latest deploy.
        """
        deadline = self._clock() + timeout
        delay = 0.25
        last: Deploy | None = None
        while True:
            if deploy_id is None:
                last = self.latest_deploy(service_id)
            else:
                last = self.get_deploy(service_id, deploy_id)
            if last is not None:
                if on_poll is not None:
                    on_poll(last)
                if last.status in DEPLOY_TERMINAL:
                    return last
            remaining = deadline - self._clock()
            if remaining <= 0:
                seen = last.status if last is not None else "no deploy"
                which = f"deploy {last.id}" if last is not None else "deploy"
                raise OperationFailed(
                    f"service {service_id}: {which} still {seen} after {timeout:g}s"
                )
            self._sleep(min(delay, remaining))
            delay = min(delay * 1.5, 3.0)

    # -- observability: metrics, logs, events (models at the end of the module) -------------

    def metrics(
        self,
        kind: MetricKind,
        resources: list[str],
        *,
        start: datetime,
        end: datetime,
        resolution_seconds: int = 60,
        **extra: Any,
    ) -> list[MetricSeries]:
        """One metric for several resources (ORed, as the spec says), one series per resource
        (and per `aggregateBy` value or `quantile`, which the series' labels name)."""
        params: dict[str, Any] = {
            "resource": list(resources),
            "startTime": _rfc3339(start),
            "endTime": _rfc3339(end),
            # Every metric endpoint takes it (they reuse /metrics/cpu's parameter); minimum 30.
            "resolutionSeconds": max(30, resolution_seconds),
            **{k: v for k, v in extra.items() if v is not None},
        }
        data = self._get_json(f"/metrics/{kind}", **params)
        if not isinstance(data, list):
            raise RenderApiError(f"Render API at {self.host}: GET /metrics/{kind}: expected a list")
        return [_parse(MetricSeries, item, f"metrics/{kind}", self.host) for item in data]

    def list_logs(
        self,
        owner_id: str,
        resources: list[str],
        *,
        start: datetime,
        end: datetime,
        level: list[str] | None = None,
        types: list[str] | None = None,
        text: list[str] | None = None,
        limit: int = 100,
        max_entries: int = 1000,
    ) -> list[LogEntry]:
        """Log lines of `resources` between `start` and `end`, oldest first, following the
        spec's time paging (`hasMore` → `nextStartTime`/`nextEndTime`) up to `max_entries`."""
        found: list[LogEntry] = []
        page_start, page_end = _rfc3339(start), _rfc3339(end)
        seen: set[tuple[str, str]] = set()
        while len(found) < max_entries:
            params: dict[str, Any] = {
                "ownerId": owner_id,
                "resource": list(resources),
                "startTime": page_start,
                "endTime": page_end,
                "direction": "forward",
                "limit": min(PAGE_LIMIT, limit),
            }
            if level:
                params["level"] = list(level)
            if types:
                params["type"] = list(types)
            if text:
                params["text"] = list(text)
            data = _object(self._get_json("/logs", **params), "GET /logs", self.host)
            logs = data.get("logs")
            if not isinstance(logs, list):
                raise RenderApiError(f"Render API at {self.host}: GET /logs: no `logs` list")
            for item in logs:
                entry = _parse(LogEntry, item, "logs", self.host)
                if (entry.id, entry.message) not in seen:
                    seen.add((entry.id, entry.message))
                    found.append(entry)
            next_start, next_end = data.get("nextStartTime"), data.get("nextEndTime")
            if not data.get("hasMore") or not isinstance(next_start, str):
                break
            if (next_start, next_end) == (page_start, page_end):
                break  # a server that does not move on would page forever
            page_start = next_start
            page_end = next_end if isinstance(next_end, str) else page_end
        found.sort(key=lambda e: e.timestamp)
        return found[:max_entries]

    def list_events(
        self,
        service_id: str,
        *,
        start: datetime,
        end: datetime,
        types: list[str] | None = None,
        limit: int = 100,
    ) -> list[ServiceEvent]:
        """The service's events in the window, most recent first as Render lists them."""
        params: dict[str, Any] = {"startTime": _rfc3339(start), "endTime": _rfc3339(end)}
        if types:
            params["type"] = list(types)
        return [
            _parse(ServiceEvent, item, f"events of {service_id}", self.host)
            for item in self._paginate(
                f"/services/{service_id}/events",
                "event",
                service_id=service_id,
                limit=limit,
                **params,
            )
        ]


def _reason(exc: Exception) -> str:
    # The same one-line reasons as every other request of the tool ("connection refused",
    # "DNS lookup failed", "TLS error: ..."), not httpx's "All connection attempts failed".
    from koinonia_infra.measure.reasons import reason

    return reason(exc)


def _api_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])[:200]
    return response.reason_phrase or "no message"


def _decode(response: httpx.Response, what: str, host: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise RenderApiError(f"Render API at {host}: {what}: answer is not JSON") from None


def _parse(model: type[M], data: Any, what: str, host: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise RenderApiError(
            f"Render API at {host}: unexpected answer for {what}: {loc}: {first['msg']}"
        ) from None


def _object(data: Any, what: str, host: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RenderApiError(f"Render API at {host}: {what}: expected a JSON object")
    return data


# -- observability: metrics, logs, events ----------------------------------------------------
# Shapes from Render's spec as vendored by cloudy-sky-software/pulumi-render
# (provider/cmd/pulumi-gen-render/openapi.yml): GET /metrics/{cpu,memory,cpu-limit,memory-limit,
# http-requests,http-latency,instance-count,active-connections} answer a list of time series
# `{labels: [{field, value}], values: [{timestamp, value}], unit}`; GET /logs answers
# `{hasMore, nextStartTime, nextEndTime, logs: [{id, message, timestamp, labels: [{name,
# value}]}]}` and pages by time; GET /services/{serviceId}/events answers
# `[{event: {id, timestamp, serviceId, type, details}, cursor}]`. Query arrays are repeated keys
# (OpenAPI's default form/explode, as render-oss/cli's generated client sends them) and times
# are RFC 3339 (`format: date-time`).

MetricKind = Literal[
    "cpu",
    "memory",
    "cpu-limit",
    "memory-limit",
    "http-requests",
    "http-latency",
    "instance-count",
    "active-connections",
]


class MetricLabel(_Model):
    field: str
    value: str


class MetricPoint(_Model):
    timestamp: datetime
    value: float


class MetricSeries(_Model):
    labels: list[MetricLabel] = Field(default_factory=list)
    values: list[MetricPoint] = Field(default_factory=list)
    unit: str = ""

    def label(self, name: str) -> str | None:
        return next((lbl.value for lbl in self.labels if lbl.field == name), None)

    @property
    def resource(self) -> str | None:
        """The service, Postgres or Key Value id the series is about (the spec's example label
        is `service`; datastores are named by `resource`)."""
        return self.label("service") or self.label("resource")


class LogLabel(_Model):
    name: str
    value: str


class LogEntry(_Model):
    id: str
    message: str
    timestamp: datetime
    labels: list[LogLabel] = Field(default_factory=list)

    def label(self, name: str) -> str | None:
        return next((lbl.value for lbl in self.labels if lbl.name == name), None)

    @property
    def level(self) -> str | None:
        return self.label("level")

    @property
    def resource(self) -> str | None:
        return self.label("resource")

    @property
    def type(self) -> str | None:
        return self.label("type")


class ServiceEvent(_Model):
    id: str
    timestamp: datetime
    service_id: str
    type: str
    details: dict[str, Any] = Field(default_factory=dict)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
