"""A simulated deployment for the ops unit tests: a fake clock, a fake Render API (served to the
real `RenderClient` through `httpx.MockTransport`), fake edge traffic and fake health probes, all
driven by the same world state, so the drill and the rollout run end to end in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from koinonia_infra.descriptor import Descriptor, parse_descriptor
from koinonia_infra.measure.health import HealthResult
from koinonia_infra.measure.samples import Sample
from koinonia_infra.ops.common import TrafficTotals
from koinonia_infra.render_api import RenderClient

# The drill's JSON keys a pipeline gates on, named by the issue (not read from the code).
REQUIRED_KEYS = {
    "failedRequests",
    "totalRequests",
    "achievedRate",
    "maxLatencyMs",
    "secondsUntilDrained",
    "secondsToRejoin",
    "resumed",
}


@dataclass
class FakeInstance:
    number: int
    service_id: str
    up: bool = True
    suspended: bool = False
    deploys: list[dict[str, Any]] = field(default_factory=list)
    # Scheduled state changes: (time, up)
    pending: list[tuple[float, bool]] = field(default_factory=list)
    # When the API starts reporting the suspend (Render suspends asynchronously after its 202).
    suspended_from: float = 0.0


class World:
    def __init__(self, instances: int = 2, *, rate: float = 200.0) -> None:
        self.t = 100.0
        self.rate = rate
        self.drain_delay = 0.3  # suspend → the edge stops routing to it
        self.rejoin_delay = 0.8  # resume → healthy and routed again
        # Render's sequence (ops/timing.py): the API reports a suspend this long after its 202...
        self.suspend_report_delay = 0.0
        # ...and a resume is a deploy (trigger `service_resumed`) that is live this long after
        # the call, the instance serving from then on. None: the resume just starts the process.
        self.resume_deploy_seconds: float | None = None
        self.resume_deploy_status = "live"  # or "update_failed"
        self.resume_deploy_listed = True  # False: the resume's deploy never shows up
        # A trigger answered 202 "Queued" without a body; the deploy is listed this much later.
        self.deploy_queued_for: float | None = None
        # Render's `slug` per instance (default: the name, as the descriptor's private address),
        # and the edge service's KOINONIA_CADDYFILE (None: the API knows no edge service).
        self.slugs: dict[int, str] = {}
        self.edge_caddyfile: str | None = None
        self.edge_cannot_reach: set[int] = set()  # the edge's dial of these fails (bad hostname)
        # The upstream header of an answer through the edge: the address it dialed.
        self.edge_dials: Callable[[int], str] = lambda n: f"svc-{n}:8080"
        self._queued: list[tuple[float, FakeInstance, dict[str, Any]]] = []
        self.deploy_steps = ["build_in_progress", "update_in_progress", "live"]
        self.fail_deploy_of: set[int] = set()
        self.never_rejoin: set[int] = set()
        self.calls: list[str] = []
        self.interrupt_at: float | None = None
        self.api_failure: Callable[[httpx.Request], httpx.Response | None] | None = None
        # GET /logs: the entries it answers (Render's log shape), and each query's parameters.
        self.log_entries: list[dict[str, Any]] = []
        self.log_queries: list[httpx.QueryParams] = []
        self.instances = {
            n: FakeInstance(
                n,
                f"srv-{n}",
                deploys=[{"id": f"dep-{n}-0", "status": "live", "commit": {"id": "c0"}}],
            )
            for n in range(1, instances + 1)
        }
        self._samples: list[Sample] = []
        self._next_send = self.t
        self._rr = 0
        self.traffic_started: float | None = None
        self.traffic_stopped: float | None = None

    # ---- time ------------------------------------------------------------------------------
    def now(self) -> float:
        return self.t

    clock = now

    def sleep(self, seconds: float) -> None:
        end = self.t + max(seconds, 0.0)
        while True:
            events = [t for inst in self.instances.values() for t, _ in inst.pending if t <= end]
            step_to = min([*events, end])
            self._generate(step_to)
            self.t = step_to
            for inst in self.instances.values():
                due = [(t, up) for t, up in inst.pending if t <= self.t]
                for item in due:
                    inst.pending.remove(item)
                    inst.up = item[1]
            if self.interrupt_at is not None and self.t >= self.interrupt_at:
                self.interrupt_at = None
                raise KeyboardInterrupt
            if step_to >= end:
                return

    def _generate(self, until: float) -> None:
        if self.traffic_started is None or self.traffic_stopped is not None:
            return
        interval = 1.0 / self.rate
        while self._next_send < until:
            up = [n for n, inst in sorted(self.instances.items()) if inst.up]
            if up:
                n = up[self._rr % len(up)]
                self._rr += 1
                sample = Sample(self._next_send, 2.0, 200, f"api-{n}", None)
            else:
                sample = Sample(self._next_send, 5000.0, None, None, "connection refused (edge)")
            self._samples.append(sample)
            self._next_send += interval

    # ---- traffic seam ----------------------------------------------------------------------
    def start_traffic(self, url: str, rate: float) -> World:
        self.calls.append(f"traffic {url} {rate:g}")
        self.rate = rate
        self.traffic_started = self.t
        self._next_send = self.t
        return self

    def samples(self) -> Sequence[Sample]:
        return list(self._samples)

    def stop(self) -> TrafficTotals:
        self.traffic_stopped = self.t
        self.calls.append("traffic stop")
        duration = self.t - (self.traffic_started or self.t)
        return TrafficTotals(
            samples=list(self._samples),
            duration=duration,
            target_rate=self.rate,
            achieved_rate=len(self._samples) / duration if duration else 0.0,
        )

    # ---- probes ----------------------------------------------------------------------------
    def probe(self, url: str) -> HealthResult:
        match = re.search(r"api-(\d+)", url)
        if match is None:  # the edge
            ok = any(i.up for i in self.instances.values())
        else:
            ok = self.instances[int(match.group(1))].up
        return HealthResult(ok=ok, detail="ok" if ok else "connection refused", latency_ms=1.0)

    # ---- Render API --------------------------------------------------------------------------
    def _by_sid(self, sid: str) -> FakeInstance | None:
        return next((i for i in self.instances.values() if i.service_id == sid), None)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/logs":  # a read, kept apart from the operation's calls
            return self._logs(request.url.params)
        self.calls.append(f"{request.method} {request.url.path}")
        for item in [q for q in self._queued if q[0] <= self.t]:
            self._queued.remove(item)
            item[1].deploys.insert(0, item[2])
        if self.api_failure is not None:
            failed = self.api_failure(request)
            if failed is not None:
                return failed
        m = re.fullmatch(r"/v1/services/([^/]+)(?:/(.*))?", request.url.path)
        if m is not None and m.group(1) == "srv-edge" and self.edge_caddyfile is not None:
            return self._edge(m.group(2) or "")
        inst = self._by_sid(m.group(1)) if m else None
        if m is None or inst is None:
            return httpx.Response(404, json={"message": "not found"})
        rest = m.group(2) or ""
        if request.method == "GET" and rest == "":
            return httpx.Response(
                200,
                json={
                    "id": inst.service_id,
                    "ownerId": "tea-fake",
                    "name": f"svc-{inst.number}",
                    "slug": self.slugs.get(inst.number, f"svc-{inst.number}"),
                    "suspended": (
                        "suspended"
                        if inst.suspended and self.t >= inst.suspended_from
                        else "not_suspended"
                    ),
                    "serviceDetails": {"url": f"http://api-{inst.number}.test"},
                },
            )
        if rest == "suspend":
            inst.suspended = True
            inst.suspended_from = self.t + self.suspend_report_delay
            inst.pending.append((self.t + self.drain_delay, False))
            return httpx.Response(202)
        if rest == "resume":
            inst.suspended = False
            if self.resume_deploy_seconds is None:
                if inst.number not in self.never_rejoin:
                    inst.pending.append((self.t + self.rejoin_delay, True))
                return httpx.Response(202)
            live_at = self.t + self.resume_deploy_seconds
            if self.resume_deploy_listed:
                inst.deploys.insert(
                    0,
                    {
                        "id": f"dep-{inst.number}-{len(inst.deploys)}",
                        "status": "build_in_progress",
                        "trigger": "service_resumed",
                        "_live_at": live_at,
                        "_ends": self.resume_deploy_status,
                    },
                )
            if self.resume_deploy_status == "live" and inst.number not in self.never_rejoin:
                inst.pending.append((live_at, True))
            return httpx.Response(202)
        if rest == "deploys" and request.method == "POST":
            dep: dict[str, Any] = {
                "id": f"dep-{inst.number}-{len(inst.deploys)}",
                "status": "created",
                "_polls": 0,
            }
            if self.deploy_queued_for is not None:
                dep["id"] = f"dep-{inst.number}-{len(inst.deploys) + len(self._queued)}"
                self._queued.append((self.t + self.deploy_queued_for, inst, dep))
                return httpx.Response(202)
            inst.deploys.insert(0, dep)
            return httpx.Response(201, json=_public(dep))
        if rest == "deploys":
            return httpx.Response(
                200,
                json=[
                    {"cursor": d["id"], "deploy": _public(_timed(d, self.t))}
                    for d in inst.deploys[:1]
                ],
            )
        if rest.startswith("deploys/"):
            dep = _timed(next(d for d in inst.deploys if d["id"] == rest.split("/")[1]), self.t)
            if "_live_at" not in dep and dep["status"] not in ("live", "update_failed"):
                polls = dep["_polls"]
                dep["_polls"] = polls + 1
                steps = self.deploy_steps
                if inst.number in self.fail_deploy_of and polls >= 1:
                    dep["status"] = "update_failed"
                else:
                    dep["status"] = steps[min(polls, len(steps) - 1)]
            return httpx.Response(200, json=_public(dep))
        return httpx.Response(404, json={"message": "no route"})

    def _logs(self, params: httpx.QueryParams) -> httpx.Response:
        """One page of the entries whose resource, level and type the query asks for."""
        self.log_queries.append(params)

        def label(entry: dict[str, Any], name: str) -> str:
            return next((x["value"] for x in entry["labels"] if x["name"] == name), "")

        wanted = [
            e
            for e in self.log_entries
            if label(e, "resource") in params.get_list("resource")
            and (not params.get_list("level") or label(e, "level") in params.get_list("level"))
            and (not params.get_list("type") or label(e, "type") in params.get_list("type"))
        ]
        end = params.get("endTime", "")
        page = {"hasMore": False, "nextStartTime": end, "nextEndTime": end, "logs": wanted}
        return httpx.Response(200, json=page)

    def _edge(self, rest: str) -> httpx.Response:
        if rest == "":
            return httpx.Response(
                200,
                json={"id": "srv-edge", "name": "koinonia-edge", "slug": "koinonia-edge-q7w2"},
            )
        if rest == "env-vars":
            item = {"key": "KOINONIA_CADDYFILE", "value": self.edge_caddyfile}
            return httpx.Response(200, json=[{"cursor": "c1", "envVar": item}])
        return httpx.Response(200, json=[])

    def sample_edge(self, url: str, count: int) -> list[Sample]:
        """GETs through the fake edge: round robin over the instances that are up, each answer
        naming its upstream as the edge's header does (`host:port` of the private address)."""
        self.calls.append(f"edge sample {url} x{count}")
        up = [
            n
            for n, inst in sorted(self.instances.items())
            if inst.up and n not in self.edge_cannot_reach
        ]
        return [
            Sample(self.t, 1.0, 200, self.edge_dials(up[i % len(up)]), None)
            if up
            else Sample(self.t, 1.0, 502, None, None)
            for i in range(count)
        ]

    def client(self) -> RenderClient:
        return RenderClient(
            "http://render.test/v1",
            "test-key",
            transport=httpx.MockTransport(self.handle),
            sleep=self.sleep,
            clock=self.clock,
            retry_deadline=5.0,
        )

    def descriptor(self) -> Descriptor:
        return parse_descriptor(
            {
                "edgeUrl": "http://edge.test",
                "edge": {"name": "koinonia-edge", "serviceId": "srv-edge"},
                "instances": [
                    {
                        "number": n,
                        "name": f"svc-{n}",
                        "serviceId": i.service_id,
                        "url": f"http://api-{n}.test",
                        "privateAddress": f"svc-{n}:8080",
                    }
                    for n, i in self.instances.items()
                ],
            },
            source="test",
        )


def _public(dep: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dep.items() if not k.startswith("_")}


def _timed(dep: dict[str, Any], now: float) -> dict[str, Any]:
    """A deploy that moves on the clock (the resume's): in progress until its time, then ended."""
    if "_live_at" in dep:
        dep["status"] = dep["_ends"] if now >= dep["_live_at"] else "build_in_progress"
    return dep
