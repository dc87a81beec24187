"""A Render API over `httpx.MockTransport` answering the observability endpoints in the spec's
shapes (tests/contract/schemas/{metrics,logs,event-list}.json) from a scenario the test sets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from koinonia_infra.descriptor import Descriptor, parse_descriptor
from koinonia_infra.render_api import RenderClient

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OWNER = "tea-monitor0000000000000"
API_1 = "srv-aaaaaaaaaaaaaaaaaaa1"
API_2 = "srv-aaaaaaaaaaaaaaaaaaa2"
EDGE = "srv-eeeeeeeeeeeeeeeeeeee"
PG = "dpg-pppppppppppppppppppp-a"
KV = "red-kkkkkkkkkkkkkkkkkkkk"
KEY = "sentinel-render-key-not-real"


def descriptor() -> Descriptor:
    return parse_descriptor(
        {
            "stack": "prod",
            "edgeUrl": "https://koinonia-edge.onrender.com",
            "edge": {"name": "koinonia-edge", "serviceId": EDGE},
            "instances": [
                {"number": n, "name": name, "serviceId": sid,
                 "url": f"https://{name}.onrender.com", "privateAddress": f"{name}-x:8080"}
                for n, name, sid in ((1, "koinonia-sms-backend", API_1),
                                     (2, "koinonia-sms-backend-2", API_2))
            ],
            "postgresId": PG,
            "keyValueId": KV,
        },
        source="test",
    )  # fmt: skip


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Scenario:
    """Per service: one value per minute over the last hour unless a list is given."""

    cpu: dict[str, float | list[float]] = field(
        default_factory=lambda: {API_1: 0.4, API_2: 0.45, EDGE: 0.05, PG: 0.2, KV: 0.02}
    )
    memory_mb: dict[str, float] = field(
        default_factory=lambda: {API_1: 600, API_2: 620, EDGE: 40, PG: 300, KV: 20}
    )
    cpu_limit: float = 1.0
    memory_limit_mb: float = 2048
    running: dict[str, int] = field(default_factory=lambda: {API_1: 1, API_2: 1, EDGE: 1})
    # requests per minute by status code
    requests: dict[str, dict[str, float]] = field(
        default_factory=lambda: {API_1: {"200": 100.0}, API_2: {"200": 100.0}}
    )
    p95_ms: dict[str, float] = field(default_factory=lambda: {API_1: 120.0, API_2: 130.0})
    suspended: set[str] = field(default_factory=set)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    log_page: int = 100
    calls: list[httpx.Request] = field(default_factory=list)

    def client(self) -> RenderClient:
        return RenderClient(
            "https://api.example.test/v1",
            KEY,
            transport=httpx.MockTransport(self.handle),
            sleep=lambda _s: None,
        )

    # -- answers -----------------------------------------------------------------------------

    def _points(self, value: float | list[float], unit: str) -> list[dict[str, Any]]:
        values = value if isinstance(value, list) else [value] * 60
        start = NOW - timedelta(minutes=len(values))
        return [
            {"timestamp": _iso(start + timedelta(minutes=i)), "value": v, "unit": unit}
            for i, v in enumerate(values)
        ]

    def _series(self, resource: str, value: float | list[float], unit: str,
                **labels: str) -> dict[str, Any]:  # fmt: skip
        field_name = "service" if resource.startswith("srv-") else "resource"
        return {
            "labels": [{"field": field_name, "value": resource},
                       *({"field": k, "value": v} for k, v in labels.items())],
            "values": self._points(value, unit),
            "unit": unit,
        }  # fmt: skip

    def metric(self, kind: str, resources: list[str], query: httpx.QueryParams) -> list[Any]:
        out: list[Any] = []
        for r in resources:
            if kind == "cpu" and r in self.cpu:
                out.append(self._series(r, self.cpu[r], "cpu"))
            elif kind == "memory" and r in self.memory_mb:
                out.append(self._series(r, self.memory_mb[r] * 1024 * 1024, "bytes"))
            elif kind == "cpu-limit" and r.startswith("srv-"):
                out.append(self._series(r, self.cpu_limit, "cpu"))
            elif kind == "memory-limit" and r.startswith("srv-"):
                out.append(self._series(r, self.memory_limit_mb * 1024 * 1024, "bytes"))
            elif kind == "instance-count" and r in self.running:
                out.append(self._series(r, float(self.running[r]), "instances"))
            elif kind == "http-requests" and r in self.requests:
                for code, per_minute in self.requests[r].items():
                    out.append(self._series(r, per_minute, "requests", statusCode=code))
            elif kind == "http-latency" and r in self.p95_ms:
                for q in query.get_list("quantile"):
                    factor = {"0.5": 0.4, "0.95": 1.0, "0.99": 1.5}[q]
                    out.append(self._series(r, self.p95_ms[r] * factor, "ms", quantile=q))
            elif kind == "active-connections" and r in (PG, KV):
                out.append(self._series(r, 7.0, "connections"))
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        path = request.url.path.removeprefix("/v1")
        q = request.url.params
        if path.startswith("/metrics/"):
            return httpx.Response(200, json=self.metric(path[9:], q.get_list("resource"), q))
        if path == "/logs":
            start = datetime.fromisoformat(q["startTime"].replace("Z", "+00:00"))
            matching = [
                e for e in self.logs
                if datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) >= start
                and (not q.get_list("level") or any(
                    lbl["name"] == "level" and lbl["value"] in q.get_list("level")
                    for lbl in e["labels"]))
            ]  # fmt: skip
            page, rest = matching[: self.log_page], matching[self.log_page :]
            return httpx.Response(
                200,
                json={
                    "hasMore": bool(rest),
                    "nextStartTime": rest[0]["timestamp"] if rest else q["endTime"],
                    "nextEndTime": q["endTime"],
                    "logs": page,
                },
            )
        if path.endswith("/events"):
            sid = path.split("/")[2]
            items = [
                {"cursor": f"c{i}", "event": e} for i, e in enumerate(self.events.get(sid, []))
            ]
            return httpx.Response(200, json=items)
        if path.startswith("/services/"):
            sid = path.split("/")[2]
            return httpx.Response(
                200,
                json={
                    "id": sid,
                    "name": sid,
                    "ownerId": OWNER,
                    "suspended": "suspended" if sid in self.suspended else "not_suspended",
                },
            )
        return httpx.Response(404, json={"message": f"no route {path}"})


def log_entry(i: int, resource: str, message: str, level: str = "error") -> dict[str, Any]:
    return {
        "id": f"log-{i:04d}",
        "message": message,
        "timestamp": _iso(NOW - timedelta(minutes=30) + timedelta(seconds=i)),
        "labels": [
            {"name": "resource", "value": resource},
            {"name": "level", "value": level},
            {"name": "type", "value": "app"},
        ],
    }


def event(i: int, service_id: str, type_: str, minutes_ago: float,
          details: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "id": f"evt-{i:020d}",
        "timestamp": _iso(NOW - timedelta(minutes=minutes_ago)),
        "serviceId": service_id,
        "type": type_,
        "details": details or {},
    }


def dumps(data: Any) -> str:
    return json.dumps(data)
