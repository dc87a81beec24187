"""Read a deployment's window from the Render API: one call per metric for every service at
once (the spec ORs repeated `resource` params and labels each series), the events of each
service, and the error-level log lines of all of them.

Everything comes from Render's public API (or the sandbox's control plane, which answers the
same endpoints from real measurements); see koinonia_infra/render_api.py for the shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import RenderApiError
from koinonia_infra.monitor.events import SHOWN_EVENTS, TROUBLE_EVENTS
from koinonia_infra.monitor.model import (
    DatastoreReport,
    EventRecord,
    LogSummary,
    MonitorReport,
    Points,
    TargetReport,
)
from koinonia_infra.monitor.redact import redact_line
from koinonia_infra.monitor.rules import evaluate
from koinonia_infra.render_api import (
    ApiKeyRejected,
    ApiUnreachable,
    MetricKind,
    MetricSeries,
    RenderClient,
    ServiceEvent,
)
from koinonia_infra.settings import MonitorSettings, VerifySettings

# About this many intervals in a window: a sparkline fits a table cell, and the spec's minimum
# resolution (30 s) bounds short windows.
TARGET_POINTS = 40
MIN_RESOLUTION_SECONDS = 30
FIRST_LOG_LINES = 5
QUANTILES = (0.5, 0.95, 0.99)
_MB = 1024 * 1024
# Render does not enumerate metric units in its spec (the example says "GB"): the ones a memory
# series may carry, in bytes.
_MEMORY_UNITS = {"": 1.0, "b": 1.0, "bytes": 1.0, "byte": 1.0, "kb": 1024.0, "kib": 1024.0,
                 "mb": _MB, "mib": _MB, "gb": 1024.0 * _MB, "gib": 1024.0 * _MB}  # fmt: skip


def resolution_for(window: timedelta) -> int:
    seconds = int(window.total_seconds() // TARGET_POINTS)
    seconds = max(MIN_RESOLUTION_SECONDS, seconds)
    return (seconds + 29) // 30 * 30  # whole half-minutes read better on an axis


@dataclass(frozen=True)
class _Window:
    start: datetime
    end: datetime
    resolution: int

    @property
    def buckets(self) -> int:
        return max(1, -(-int((self.end - self.start).total_seconds()) // self.resolution))

    def index(self, moment: datetime) -> int | None:
        offset = (moment - self.start).total_seconds()
        if offset < 0 or moment > self.end:
            return None
        return min(self.buckets - 1, int(offset // self.resolution))


def _bucketed(window: _Window, series: MetricSeries, scale: float = 1.0) -> Points:
    sums = [0.0] * window.buckets
    counts = [0] * window.buckets
    for point in series.values:
        i = window.index(point.timestamp)
        if i is not None:
            sums[i] += point.value * scale
            counts[i] += 1
    return [s / c if c else None for s, c in zip(sums, counts, strict=True)]


def _summed(window: _Window, series: list[MetricSeries]) -> Points:
    out: Points = [None] * window.buckets
    for s in series:
        for point in s.values:
            i = window.index(point.timestamp)
            if i is not None:
                out[i] = (out[i] or 0.0) + point.value
    return out


def _present(points: Points) -> list[float]:
    return [p for p in points if p is not None]


def _mean(points: Points) -> float | None:
    values = _present(points)
    return sum(values) / len(values) if values else None


def _peak(points: Points) -> float | None:
    values = _present(points)
    return max(values) if values else None


def _latest(series: list[MetricSeries]) -> float | None:
    points = [p for s in series for p in s.values]
    return max(points, key=lambda p: p.timestamp).value if points else None


def _weighted(quantile: Points, weights: Points) -> float | None:
    """A window's latency from its intervals' quantiles, weighted by their request counts (an
    approximation: quantiles do not add; an interval without a count weighs 1)."""
    total = weight_sum = 0.0
    for q, w in zip(quantile, weights, strict=True):
        if q is None:
            continue
        weight = w if w else 1.0
        total += q * weight
        weight_sum += weight
    return total / weight_sum if weight_sum else None


class _Reader:
    """Metric reads that survive a refused endpoint (a warning), not a rejected key."""

    def __init__(self, client: RenderClient, window: _Window, warnings: list[str]) -> None:
        self.client = client
        self.window = window
        self.warnings = warnings

    def call(self, what: str, read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        except (ApiKeyRejected, ApiUnreachable):
            raise
        except RenderApiError as exc:
            self.warnings.append(f"{what}: {exc.message}")
            return default

    def metric(self, kind: MetricKind, resources: list[str], **extra: Any) -> list[MetricSeries]:
        if not resources:
            return []
        result: list[MetricSeries] = self.call(
            f"metrics/{kind}",
            lambda: self.client.metrics(
                kind,
                resources,
                start=self.window.start,
                end=self.window.end,
                resolution_seconds=self.window.resolution,
                **extra,
            ),
            [],
        )
        return result


def _by_resource(series: list[MetricSeries]) -> dict[str, list[MetricSeries]]:
    out: dict[str, list[MetricSeries]] = {}
    for s in series:
        if s.resource is not None:
            out.setdefault(s.resource, []).append(s)
    return out


def _memory_scale(unit: str) -> float:
    return _MEMORY_UNITS.get(unit.strip().lower(), 1.0) / _MB


def _cpu_scale(unit: str) -> float:
    # CPU in cores (the default) or millicores.
    return 0.001 if unit.strip().lower() in ("millicpu", "millicores", "m") else 1.0


def _latency_scale(unit: str) -> float:
    return 1000.0 if unit.strip().lower() in ("s", "seconds") else 1.0


def _share_of(points: Points, limit: float | None) -> Points:
    # Share of the plan's limit in percent; without a limit, of one CPU / as is.
    base = limit if limit else None
    return [None if p is None else (p / base * 100 if base else p * 100) for p in points]


def _event_detail(event: ServiceEvent) -> str:
    d = event.details
    parts: list[str] = []
    reason = d.get("reason")
    if isinstance(reason, dict):
        parts += [f"{k}={v}" for k, v in reason.items() if v not in (None, False)]
    elif isinstance(reason, str):
        parts.append(reason)
    for key in ("deployStatus", "instanceID", "triggeredByUser"):
        if d.get(key) is not None:
            parts.append(f"{key}={d[key]}")
    return redact_line(", ".join(parts), max_length=120)


@dataclass
class _Metrics:
    cpu: dict[str, list[MetricSeries]]
    memory: dict[str, list[MetricSeries]]
    cpu_limit: dict[str, list[MetricSeries]]
    memory_limit: dict[str, list[MetricSeries]]
    count: dict[str, list[MetricSeries]]
    requests: dict[str, list[MetricSeries]]
    latency: dict[str, list[MetricSeries]]
    connections: dict[str, list[MetricSeries]]

    @classmethod
    def read(cls, reader: _Reader, service_ids: list[str], store_ids: list[str]) -> _Metrics:
        both = service_ids + store_ids
        return cls(
            cpu=_by_resource(reader.metric("cpu", both)),
            memory=_by_resource(reader.metric("memory", both)),
            cpu_limit=_by_resource(reader.metric("cpu-limit", service_ids)),
            memory_limit=_by_resource(reader.metric("memory-limit", service_ids)),
            count=_by_resource(reader.metric("instance-count", service_ids)),
            requests=_by_resource(
                reader.metric("http-requests", service_ids, aggregateBy="statusCode")
            ),
            latency=_by_resource(
                reader.metric("http-latency", service_ids, quantile=list(QUANTILES))
            ),
            connections=_by_resource(reader.metric("active-connections", store_ids)),
        )


def _fill_usage(t: TargetReport, m: _Metrics, window: _Window, sid: str) -> None:
    cpu_series = m.cpu.get(sid, [])
    limit = _latest(m.cpu_limit.get(sid, []))
    if cpu_series:
        first = cpu_series[0]
        t.cpu_series = _share_of(_bucketed(window, first, _cpu_scale(first.unit)), limit)
    else:
        t.cpu_series = [None] * window.buckets
    t.cpu_percent = _mean(t.cpu_series)
    t.cpu_peak_percent = _peak(t.cpu_series)
    mem_series = m.memory.get(sid, [])
    if not mem_series:
        return
    t.memory_mb = _peak(_bucketed(window, mem_series[0], _memory_scale(mem_series[0].unit)))
    limit_series = m.memory_limit.get(sid, [])
    raw_limit = _latest(limit_series)
    if raw_limit and t.memory_mb is not None:
        t.memory_percent = t.memory_mb / (raw_limit * _memory_scale(limit_series[0].unit)) * 100


def _fill_http(t: TargetReport, m: _Metrics, window: _Window, sid: str) -> None:
    req_series = m.requests.get(sid, [])
    per_bucket = _summed(window, req_series)
    t.request_series = per_bucket
    t.requests = int(sum(_present(per_bucket)))
    errors = sum(
        p.value
        for s in req_series
        if (s.label("statusCode") or "").startswith("5")
        for p in s.values
        if window.index(p.timestamp) is not None
    )
    if t.requests:
        t.error_rate_percent = errors / t.requests * 100
    for s in m.latency.get(sid, []):
        q = s.label("quantile")
        if q is None:
            continue
        points = _bucketed(window, s, _latency_scale(s.unit))
        value = _weighted(points, per_bucket)
        quantile = round(float(q), 3)
        if quantile == 0.5:
            t.p50_ms = value
        elif quantile == 0.95:
            t.p95_ms, t.p95_series = value, points
        elif quantile == 0.99:
            t.p99_ms = value


def _fill_down(t: TargetReport, m: _Metrics, sid: str, last: ServiceEvent | None) -> None:
    running = _latest(m.count.get(sid, []))
    if t.suspended:
        t.down, t.down_reason = True, "suspended"
    elif running is not None and running < 1:
        t.down, t.down_reason = True, "no instance running (instance-count 0)"
    elif last is not None and last.type in TROUBLE_EVENTS:
        t.down, t.down_reason = True, f"{last.type} at {last.timestamp:%H:%M:%S}"


def _read_events(
    client: RenderClient, reader: _Reader, role_of: dict[str, str], window: _Window
) -> tuple[list[EventRecord], dict[str, ServiceEvent]]:
    events: list[EventRecord] = []
    latest: dict[str, ServiceEvent] = {}
    for sid, role in role_of.items():
        found: list[ServiceEvent] = reader.call(
            f"events of {sid}",
            partial(client.list_events, sid, start=window.start, end=window.end, limit=50),
            [],
        )
        for ev in found:
            if ev.type not in SHOWN_EVENTS:
                continue
            events.append(
                EventRecord(
                    timestamp=ev.timestamp, role=role, type=ev.type, detail=_event_detail(ev)
                )
            )
            if ev.type in TROUBLE_EVENTS or ev.type in ("server_available", "server_restarted"):
                seen = latest.get(sid)
                if seen is None or ev.timestamp > seen.timestamp:
                    latest[sid] = ev
    events.sort(key=lambda e: e.timestamp, reverse=True)
    return events, latest


def _datastore(role: str, rid: str, m: _Metrics, window: _Window) -> DatastoreReport:
    store = DatastoreReport(role=role, resource_id=rid)
    if rid in m.cpu:
        s = m.cpu[rid][0]
        store.cpu_series = _share_of(_bucketed(window, s, _cpu_scale(s.unit)), None)
        store.cpu_percent = _mean(store.cpu_series)
    if rid in m.memory:
        s = m.memory[rid][0]
        store.memory_mb = _peak(_bucketed(window, s, _memory_scale(s.unit)))
    store.connections = _latest(m.connections.get(rid, []))
    return store


def collect_monitor(
    descriptor: Descriptor,
    client: RenderClient,
    *,
    since: timedelta,
    monitor: MonitorSettings | None = None,
    verify: VerifySettings | None = None,
    now: datetime | None = None,
    api_url: str | None = None,
) -> MonitorReport:
    """The window `since` before `now`, read from the API, with the rules evaluated."""
    end = (now or datetime.now(UTC)).astimezone(UTC)
    window = _Window(end - since, end, resolution_for(since))
    warnings: list[str] = []
    reader = _Reader(client, window, warnings)

    roles: list[tuple[str, str, str | None]] = [
        (f"api-{i.number}", i.name, i.service_id) for i in descriptor.instances
    ]
    if descriptor.edge is not None:
        roles.append(("edge", descriptor.edge.name, descriptor.edge.service_id))
    role_of = {sid: role for role, _, sid in roles if sid}
    service_ids = list(role_of)
    stores = [
        (role, rid)
        for role, rid in (
            ("postgres", descriptor.postgres_id),
            ("key-value", descriptor.key_value_id),
        )
        if rid
    ]

    services: dict[str, dict[str, Any]] = {
        sid: reader.call(f"service {sid}", partial(client.service_json, sid), {})
        for sid in service_ids
    }
    metrics = _Metrics.read(reader, service_ids, [rid for _, rid in stores])
    events, latest_event = _read_events(client, reader, role_of, window)

    targets: list[TargetReport] = []
    for role, name, sid in roles:
        target = TargetReport(role=role, name=name, service_id=sid)
        targets.append(target)
        if sid is None:
            continue
        if services.get(sid):
            target.suspended = services[sid].get("suspended") == "suspended"
        _fill_usage(target, metrics, window, sid)
        _fill_http(target, metrics, window, sid)
        _fill_down(target, metrics, sid, latest_event.get(sid))
    total = sum(t.requests for t in targets if t.role.startswith("api-"))
    for t in targets:
        if t.role.startswith("api-") and total:
            t.request_share_percent = t.requests / total * 100

    report = MonitorReport(
        generated_at=end,
        start=window.start,
        end=window.end,
        resolution_seconds=window.resolution,
        api_url=api_url,
        targets=targets,
        datastores=[_datastore(role, rid, metrics, window) for role, rid in stores],
        events=events[:20],
        logs=_error_logs(client, reader, services, role_of, window),
        warnings=warnings,
    )
    report.alerts = evaluate(report, monitor or MonitorSettings(), verify or VerifySettings())
    return report


def _error_logs(
    client: RenderClient,
    reader: _Reader,
    services: dict[str, dict[str, Any]],
    role_of: dict[str, str],
    window: _Window,
) -> LogSummary:
    service_ids = list(role_of)
    owner = next((str(s["ownerId"]) for s in services.values() if s.get("ownerId")), None)
    if owner is None or not service_ids:
        return LogSummary(read=False)
    entries = reader.call(
        "logs",
        lambda: client.list_logs(
            owner, service_ids, start=window.start, end=window.end, level=["error"]
        ),
        None,
    )
    if entries is None:
        return LogSummary(read=False)
    first = [
        f"{role_of.get(e.resource or '', e.resource or '?')}: "
        + redact_line(e.message, max_length=200)
        for e in entries[:FIRST_LOG_LINES]
    ]
    return LogSummary(error_count=len(entries), first=first)
