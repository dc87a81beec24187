"""The control plane's metrics, logs and events: Render's observability endpoints, answered from
what the sandbox's processes really do.

    GET /v1/metrics/{cpu,memory,cpu-limit,memory-limit,http-requests,http-latency,
                     instance-count,active-connections}
    GET /v1/logs
    GET /v1/services/{serviceId}/events

Shapes and parameters from Render's spec as vendored by cloudy-sky-software/pulumi-render
(provider/cmd/pulumi-gen-render/openapi.yml: `/metrics/cpu` and the endpoints that reuse its
parameters and 200 answer, `/logs` with `Logs200Response` and the log entry of
`/logs/subscribe`, `/services/{serviceId}/events` with `serviceEventWithCursor`); the answers are
validated against tests/contract/schemas/{metrics,logs,event-list}.json.

Where the numbers come from, every second (`Observer.tick`):

- CPU and memory: /proc/<pid>/stat (utime + stime) and /proc/<pid>/statm (resident pages) of
  each instance's process, the edge's Caddy, Redis, and the postmaster with its backends;
- instance count: whether the service's process is alive;
- requests and latency: the JSON line each instance writes per request to its log file
  (api_server.py `_request_log`), read back as the file grows;
- log lines: the same files (`logs/api-N.log`, `logs/caddy.log`), one entry per line, level
  `error` for an error or a traceback, stamped with the line's own time when it has one;
- connections: ESTABLISHED sockets on the datastore's port (/proc/net/tcp, tcp6);
- events: the supervisor's (`event()`): an instance that died on its own → `server_failed`,
  a restart → `server_restarted`.

Not measured here: the edge's own request metrics (Caddy writes no access log in the sandbox),
so `http-requests`/`http-latency` series exist for the instances only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import math
import os
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from koinonia_infra.sandbox.control_plane import OWNER_ID, Service, _error, _page, render_id
from koinonia_infra.sandbox.datastores_api import Datastores

TICK_SECONDS = 1.0
KEEP_SAMPLES = 3 * 3600  # three hours of one-second samples per resource
KEEP_LOG_LINES = 50_000
KEEP_REQUESTS = 200_000
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Render's instance types (https://render.com/pricing, "Compute"): CPU and memory of a plan,
# what /metrics/cpu-limit and /metrics/memory-limit report for a service on it.
PLAN_LIMITS: dict[str, tuple[float, int]] = {
    "starter": (0.5, 512 * 1024**2),
    "standard": (1.0, 2 * 1024**3),
    "pro": (2.0, 4 * 1024**3),
    "pro_plus": (4.0, 8 * 1024**3),
    "pro_max": (4.0, 16 * 1024**3),
    "pro_ultra": (8.0, 32 * 1024**3),
}
_ERROR = re.compile(r"\b(error|exception|traceback|critical|fatal|panic)\b", re.IGNORECASE)
_WARNING = re.compile(r"\bwarn(ing)?\b", re.IGNORECASE)
_LEADING_TIME = re.compile(
    r"^\[?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
)


class Observed(Protocol):
    """What the observer reads of the supervisor."""

    services: dict[str, Service]
    children: dict[str, asyncio.subprocess.Process]
    ports: dict[str, int]
    pg_pid: int | None
    logs: Path
    datastores: Datastores | None


# ---- reading /proc -----------------------------------------------------------------------------


def _cpu_ticks(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: fields count from after its closing paren.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                raw = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if int(raw[raw.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def established_connections(port: int) -> int:
    """ESTABLISHED TCP sockets whose local port is `port` (the server's side of each client)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


# ---- the store ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    at: float  # epoch seconds
    cpu: float  # CPU cores in use since the previous sample
    rss: float  # bytes
    running: int
    connections: int = 0


@dataclass(slots=True)
class RequestRecord:
    at: float
    status: int
    ms: float


@dataclass(slots=True)
class LogRecord:
    id: str
    at: float
    resource: str
    instance: str
    level: str
    type: str
    message: str
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        labels = [
            {"name": "resource", "value": self.resource},
            {"name": "instance", "value": self.instance},
            {"name": "level", "value": self.level},
            {"name": "type", "value": self.type},
            *({"name": k, "value": v} for k, v in self.extra.items()),
        ]
        return {
            "id": self.id,
            "message": self.message,
            "timestamp": _iso(self.at),
            "labels": labels,
        }


@dataclass(slots=True)
class EventRecord:
    id: str
    at: float
    service_id: str
    type: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "timestamp": _iso(self.at),
            "serviceId": self.service_id,
            "type": self.type,
            "details": self.details,
        }


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def _epoch(text: str) -> float:
    """RFC 3339 (the spec's `format: date-time`) or epoch seconds (its description says so)."""
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def instance_id(service_id: str, pid: int) -> str:
    """Render's instance ids are the service id and five characters (`srv-…-abcde`)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    n = pid
    for _ in range(5):
        out = digits[n % 36] + out
        n //= 36
    return f"{service_id}-{out}"


class Observer:
    """Samples the processes every second and reads their logs as they grow."""

    def __init__(self, observed: Observed, *, clock: Callable[[], float] | None = None) -> None:
        import time

        self.observed = observed
        self.clock = clock or time.time
        self.samples: dict[str, deque[Sample]] = {}
        self.requests: dict[str, deque[RequestRecord]] = {}
        # Apart, so a busy hour of request lines never pushes the application's errors out.
        self.log_lines: deque[LogRecord] = deque(maxlen=KEEP_LOG_LINES)
        self.request_lines: deque[LogRecord] = deque(maxlen=KEEP_LOG_LINES)
        self.events: dict[str, list[EventRecord]] = {}
        self._ticks: dict[int, tuple[float, int]] = {}
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}
        self._log_seq = 0
        self.lock = threading.RLock()

    # -- events ------------------------------------------------------------------------------

    def event(self, service_id: str, type_: str, details: dict[str, Any] | None = None) -> None:
        record = EventRecord(render_id("evt"), self.clock(), service_id, type_, details or {})
        with self.lock:
            self.events.setdefault(service_id, []).append(record)

    # Sampling runs in a worker thread, the routes on the event loop: both go through `lock`
    # (a deque appended to while another thread iterates it raises).

    def tick(self) -> None:
        """A sample of every process, then the new lines of the log files."""
        with self.lock:
            self._tick()

    def read_logs(self, now: float) -> None:
        with self.lock:
            self._read_logs(now)

    # -- sampling ----------------------------------------------------------------------------

    def _cpu_of(self, pids: Iterable[int], now: float) -> float:
        used = 0.0
        for pid in pids:
            ticks = _cpu_ticks(pid)
            if ticks is None:
                self._ticks.pop(pid, None)
                continue
            before = self._ticks.get(pid)
            self._ticks[pid] = (now, ticks)
            if before is not None and now > before[0]:
                used += (ticks - before[1]) / _CLK_TCK / (now - before[0])
        return max(0.0, used)

    def _record(self, resource: str, sample: Sample) -> None:
        self.samples.setdefault(resource, deque(maxlen=KEEP_SAMPLES)).append(sample)

    def _service_pid(self, service: Service) -> int | None:
        role = "edge" if service.kind == "edge" else f"api-{service.number}"
        proc = self.observed.children.get(role)
        if proc is None or proc.returncode is not None:
            return None
        return proc.pid

    def _tick(self) -> None:
        now = self.clock()
        for service in list(self.observed.services.values()):
            pid = self._service_pid(service)
            pids = [] if pid is None or service.suspended else [pid]
            self._record(
                service.id,
                Sample(now, self._cpu_of(pids, now), sum(_rss_bytes(p) for p in pids), len(pids)),
            )
        stores = self.observed.datastores
        postgres_id = stores.postgres[0].id if stores and stores.postgres else None
        key_value_id = stores.key_values[0].id if stores and stores.key_values else None
        pg = self.observed.pg_pid
        if postgres_id and pg is not None:
            pids = [pg, *_children_of(pg)]
            port = self.observed.ports.get("postgres", 0)
            self._record(
                postgres_id,
                Sample(now, self._cpu_of(pids, now), sum(_rss_bytes(p) for p in pids), 1,
                       established_connections(port)),
            )  # fmt: skip
        redis = self.observed.children.get("redis")
        if key_value_id and redis is not None and redis.returncode is None:
            port = self.observed.ports.get("redis", 0)
            self._record(
                key_value_id,
                Sample(now, self._cpu_of([redis.pid], now), _rss_bytes(redis.pid), 1,
                       established_connections(port)),
            )  # fmt: skip
        self._read_logs(now)

    # -- logs --------------------------------------------------------------------------------

    def _log_files(self) -> list[tuple[Path, Service]]:
        files: list[tuple[Path, Service]] = []
        for service in self.observed.services.values():
            name = "caddy" if service.kind == "edge" else f"api-{service.number}"
            files.append((self.observed.logs / f"{name}.log", service))
        return files

    def start_at_end(self) -> None:
        """Lines written before the observer started belong to earlier runs: skip them."""
        for path, _ in self._log_files():
            with contextlib.suppress(OSError):
                self._offsets[path] = path.stat().st_size

    def _read_logs(self, now: float) -> None:
        for path, service in self._log_files():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            offset = self._offsets.get(path, 0)
            if size < offset:
                offset = 0  # truncated or replaced
            if size == offset:
                continue
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = self._partial.pop(path, b"") + handle.read(size - offset)
            self._offsets[path] = size
            lines = chunk.split(b"\n")
            if lines[-1]:
                self._partial[path] = lines[-1]
            pid = self._service_pid(service) or 0
            for raw in lines[:-1]:
                self._line(
                    service, instance_id(service.id, pid), raw.decode("utf-8", "replace"), now
                )

    def _line(self, service: Service, instance: str, text: str, now: float) -> None:
        text = text.rstrip("\r")
        if not text.strip():
            return
        data: dict[str, Any] | None = None
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                loaded = json.loads(text)
                data = loaded if isinstance(loaded, dict) else None
        self._log_seq += 1
        log_id = f"log-{self._log_seq:012d}"
        if data is not None and data.get("type") == "request":
            at = _safe_epoch(data.get("time"), now)
            status = int(data.get("status", 0))
            self.requests.setdefault(service.id, deque(maxlen=KEEP_REQUESTS)).append(
                RequestRecord(at, status, float(data.get("ms", 0.0)))
            )
            message = (
                f"{data.get('method', '?')} {data.get('path', '?')} {status} {data.get('ms')}ms"
            )
            extra = {"statusCode": str(status), "method": str(data.get("method", "")),
                     "path": str(data.get("path", ""))}  # fmt: skip
            self.request_lines.append(
                LogRecord(log_id, at, service.id, instance, "info", "request", message, extra)
            )
            return
        level = "info"
        at = now
        if data is not None:
            level = str(data.get("level", "info")).lower()
            at = _safe_epoch(data.get("time", data.get("ts")), now)
        else:
            match = _LEADING_TIME.match(text)
            if match:
                at = _safe_epoch(match.group(1), now)
            if _ERROR.search(text):
                level = "error"
            elif _WARNING.search(text):
                level = "warning"
        self.log_lines.append(LogRecord(log_id, at, service.id, instance, level, "app", text))

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        self.start_at_end()
        while True:
            try:
                await asyncio.to_thread(self.tick)
            except Exception as exc:  # a bad /proc read must not end the sampling
                print(f"observability: sample failed: {exc!r}", flush=True)
            await asyncio.sleep(TICK_SECONDS)


# A line is read within a second or so of being written: a time of its own further off than
# this is another clock's (a naive local time, a replayed file), and the read time is used.
LINE_CLOCK_SKEW_SECONDS = 120.0


def _safe_epoch(value: Any, default: float) -> float:
    """The line's own time when it has a plausible one, else `default` (when it was read)."""
    found: float | None = None
    if isinstance(value, (int, float)):
        found = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            found = _epoch(value)
    if found is None or abs(found - default) > LINE_CLOCK_SKEW_SECONDS:
        return default
    return found


# ---- the routes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Query:
    resources: list[str]
    start: float
    end: float
    resolution: int


def _window(request: web.Request, now: float) -> tuple[float, float]:
    try:
        end = _epoch(request.query["endTime"]) if "endTime" in request.query else now
        start = _epoch(request.query["startTime"]) if "startTime" in request.query else end - 3600
    except ValueError:
        raise _error(400, "invalid_time", "startTime and endTime must be date-time") from None
    if start > end:
        raise _error(400, "invalid_time", "startTime must not be after endTime")
    return start, end


def _resources(request: web.Request, *names: str) -> list[str]:
    out: list[str] = []
    for name in names:
        for value in request.query.getall(name, []):
            out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def _metric_query(request: web.Request, now: float) -> _Query:
    start, end = _window(request, now)
    try:
        resolution = float(request.query.get("resolutionSeconds", "60"))
    except ValueError:
        raise _error(400, "invalid_resolution", "resolutionSeconds must be a number") from None
    if resolution < 30:
        raise _error(400, "invalid_resolution", "resolutionSeconds must be at least 30")
    return _Query(_resources(request, "resource", "service"), start, end, int(resolution))


def _label(resource: str) -> dict[str, str]:
    # The spec's example label is {field: service, value: srv-…}; datastores are resources.
    return {"field": "service" if resource.startswith("srv-") else "resource", "value": resource}


def _buckets(q: _Query) -> list[float]:
    first = math.floor(q.start / q.resolution) * q.resolution
    return [first + i * q.resolution for i in range(int((q.end - first) // q.resolution) + 1)]


def _series(
    labels: list[dict[str, str]], points: list[tuple[float, float]], unit: str
) -> dict[str, Any]:
    return {
        "labels": labels,
        # The spec requires `unit` on each point too (metrics' values items: timestamp, value,
        # unit), not only on the series.
        "values": [{"timestamp": _iso(at), "value": value, "unit": unit} for at, value in points],
        "unit": unit,
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


class _Handlers:
    def __init__(self, observer: Observer) -> None:
        self.o = observer

    async def metric(self, request: web.Request) -> web.Response:
        with self.o.lock:
            return self._metric(request)

    async def logs(self, request: web.Request) -> web.Response:
        with self.o.lock:
            return self._logs(request)

    async def events(self, request: web.Request) -> web.Response:
        with self.o.lock:
            return self._events(request)

    def _sampled(
        self, q: _Query, pick: Callable[[list[Sample]], float]
    ) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        for resource in q.resources:
            samples = self.o.samples.get(resource)
            if samples is None:
                continue
            grouped: dict[float, list[Sample]] = {}
            for s in samples:
                if q.start <= s.at <= q.end:
                    key = math.floor(s.at / q.resolution) * q.resolution
                    grouped.setdefault(key, []).append(s)
            out[resource] = [(at, pick(group)) for at, group in sorted(grouped.items())]
        return out

    def _plan(self, resource: str) -> str | None:
        service = self.o.observed.services.get(resource)
        return service.plan if service is not None else None

    def _metric(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        q = _metric_query(request, self.o.clock())
        answer: list[dict[str, Any]] = []
        if kind in ("cpu", "memory", "instance-count", "active-connections"):
            pick, unit = {
                "cpu": (lambda g: sum(s.cpu for s in g) / len(g), "cpu"),
                "memory": (lambda g: sum(s.rss for s in g) / len(g), "bytes"),
                "instance-count": (lambda g: float(g[-1].running), "instances"),
                "active-connections": (lambda g: float(g[-1].connections), "connections"),
            }[kind]
            for resource, points in self._sampled(q, pick).items():
                if kind == "active-connections" and resource.startswith("srv-"):
                    continue  # the spec: Postgres and Redis ids only
                answer.append(_series([_label(resource)], points, unit))
        elif kind in ("cpu-limit", "memory-limit"):
            for resource in q.resources:
                plan = self._plan(resource)
                if plan is None or plan not in PLAN_LIMITS:
                    continue
                cpu, memory = PLAN_LIMITS[plan]
                value = cpu if kind == "cpu-limit" else float(memory)
                points = [(at, value) for at in _buckets(q)]
                answer.append(
                    _series([_label(resource)], points, "cpu" if kind == "cpu-limit" else "bytes")
                )
        elif kind == "http-requests":
            answer = self._requests(q, request.query.get("aggregateBy"))
        elif kind == "http-latency":
            answer = self._latency(q, request.query.getall("quantile", []) or ["0.95"])
        else:
            raise _error(404, "not_found", f"metric {kind} not found")
        return web.json_response(answer)

    def _requests_in(self, q: _Query, resource: str) -> dict[float, list[RequestRecord]]:
        grouped: dict[float, list[RequestRecord]] = {}
        for r in self.o.requests.get(resource, ()):
            if q.start <= r.at <= q.end:
                grouped.setdefault(math.floor(r.at / q.resolution) * q.resolution, []).append(r)
        return grouped

    def _requests(self, q: _Query, aggregate: str | None) -> list[dict[str, Any]]:
        if aggregate not in (None, "statusCode", "host"):
            raise _error(400, "invalid_aggregate", "aggregateBy must be statusCode or host")
        answer: list[dict[str, Any]] = []
        for resource in q.resources:
            grouped = self._requests_in(q, resource)
            if not grouped:
                continue
            if aggregate == "statusCode":
                codes = sorted({r.status for g in grouped.values() for r in g})
                for code in codes:
                    points = [(at, float(sum(1 for r in g if r.status == code)))
                              for at, g in sorted(grouped.items())]  # fmt: skip
                    labels = [_label(resource), {"field": "statusCode", "value": str(code)}]
                    answer.append(_series(labels, points, "requests"))
            else:
                points = [(at, float(len(g))) for at, g in sorted(grouped.items())]
                answer.append(_series([_label(resource)], points, "requests"))
        return answer

    def _latency(self, q: _Query, quantiles: list[str]) -> list[dict[str, Any]]:
        try:
            wanted = [float(v) for v in quantiles]
        except ValueError:
            raise _error(400, "invalid_quantile", "quantile must be a number") from None
        if any(not 0 < v <= 1 for v in wanted):
            raise _error(400, "invalid_quantile", "quantile must be in (0, 1]")
        answer: list[dict[str, Any]] = []
        for resource in q.resources:
            grouped = self._requests_in(q, resource)
            if not grouped:
                continue
            for quantile in wanted:
                points = [(at, _quantile([r.ms for r in g], quantile))
                          for at, g in sorted(grouped.items())]  # fmt: skip
                labels = [_label(resource), {"field": "quantile", "value": f"{quantile:g}"}]
                answer.append(_series(labels, points, "ms"))
        return answer

    def _logs(self, request: web.Request) -> web.Response:
        if not request.query.get("ownerId"):
            raise _error(400, "invalid_owner", "ownerId is required")
        if request.query["ownerId"] != OWNER_ID:
            return web.json_response({"hasMore": False, "nextStartTime": _iso(0),
                                      "nextEndTime": _iso(0), "logs": []})  # fmt: skip
        resources = set(_resources(request, "resource"))
        if not resources:
            raise _error(400, "invalid_resource", "resource is required")
        start, end = _window(request, self.o.clock())
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            raise _error(
                400, "invalid_limit", "limit must be an integer between 1 and 100"
            ) from None
        if not 1 <= limit <= 100:
            raise _error(400, "invalid_limit", "limit must be an integer between 1 and 100")
        direction = request.query.get("direction", "backward")
        filters = {
            name: request.query.getall(name)
            for name in ("level", "type", "instance", "text", "statusCode", "method", "path")
            if request.query.getall(name, [])
        }
        matching = [
            r for r in (*self.o.log_lines, *self.o.request_lines)
            if r.resource in resources and start <= r.at <= end and _matches(r, filters)
        ]  # fmt: skip
        matching.sort(key=lambda r: (r.at, r.id), reverse=direction == "backward")
        page, rest = matching[:limit], matching[limit:]
        if rest:
            boundary = rest[0].at
            next_start, next_end = (boundary, end) if direction == "forward" else (start, boundary)
        else:
            next_start, next_end = end, end
        return web.json_response(
            {
                "hasMore": bool(rest),
                "nextStartTime": _iso(next_start),
                "nextEndTime": _iso(next_end),
                "logs": [r.to_json() for r in page],
            }
        )

    def _events(self, request: web.Request) -> web.Response:
        service_id = request.match_info["service_id"]
        if service_id not in self.o.observed.services:
            raise _error(404, "not_found", f"service {service_id} not found")
        start, end = _window(request, self.o.clock())
        types = set(request.query.getall("type", []))
        items = [
            (e.id.removeprefix("evt-"), e.to_json())
            for e in sorted(self.o.events.get(service_id, []), key=lambda e: e.at, reverse=True)
            if start <= e.at <= end and (not types or e.type in types)
        ]
        return _page(request, "event", items)


def _matches(record: LogRecord, filters: dict[str, list[str]]) -> bool:
    """The spec's filters, each ORed over its values; wildcards as in Render's log search."""
    for name, patterns in filters.items():
        if name == "text":
            value = record.message
            if not any(fnmatch.fnmatch(value, f"*{p}*") for p in patterns):
                return False
            continue
        value = {"level": record.level, "type": record.type, "instance": record.instance}.get(
            name, record.extra.get(name, "")
        )
        if not any(fnmatch.fnmatch(value, p) for p in patterns):
            return False
    return True


def register_observability(
    app: web.Application, observer: Observer | None, *, sample: bool = True
) -> None:
    """Adds the metrics, logs and events routes; none when the backend observes nothing.
    `sample=False`: no sampling loop (a test drives `tick` and `read_logs` itself)."""
    if observer is None:
        return
    handlers = _Handlers(observer)

    # Sampling runs as long as the control plane serves (runner setup → cleanup).
    async def sample_loop(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(observer.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    if sample:
        app.cleanup_ctx.append(sample_loop)
    app.router.add_get("/v1/metrics/{kind}", handlers.metric)
    app.router.add_get("/v1/logs", handlers.logs)
    app.router.add_get("/v1/services/{service_id}/events", handlers.events)
