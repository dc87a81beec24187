"""The observability reads against Render's spec: the answers the monitor's tests are served
(tests/monitor/fake_render.py) are valid per tests/contract/schemas/{metrics,logs,event-list},
and the client parses spec-valid answers into the records `monitor` and the log checks use.
The sandbox's own answers are checked in tests/monitor/test_monitor_sandbox.py."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from contract_support import assert_valid, violations

sys.path.insert(0, str(Path(__file__).parents[1] / "monitor"))
from fake_render import (  # type: ignore[import-not-found, unused-ignore]
    API_1,
    API_2,
    NOW,
    OWNER,
    Scenario,
    event,
    log_entry,
)

START = NOW - timedelta(hours=1)


def test_metric_answers_are_spec_valid_and_parse_with_their_labels() -> None:
    scenario = Scenario()
    query = httpx.QueryParams({"quantile": ["0.5", "0.95"]})
    for kind in ("cpu", "memory", "cpu-limit", "memory-limit", "instance-count",
                 "http-requests", "http-latency"):  # fmt: skip
        assert_valid("metrics", scenario.metric(kind, [API_1, API_2], query))
    with scenario.client() as client:
        series = client.metrics("http-latency", [API_1], start=START, end=NOW, quantile=["0.95"])
    assert [(s.resource, s.label("quantile"), s.unit) for s in series] == [(API_1, "0.95", "ms")]
    assert series[0].values[0].timestamp == NOW - timedelta(minutes=60)


def test_a_point_without_its_unit_breaks_the_spec() -> None:
    answer = Scenario().metric("cpu", [API_1], httpx.QueryParams())
    del answer[0]["values"][0]["unit"]
    assert violations("metrics", answer) == ["$[0].values[0]: 'unit' is a required property"]


def test_log_pages_are_spec_valid_and_parse_into_records() -> None:
    logs = [log_entry(i, API_1, f"line {i}") for i in range(3)]
    scenario = Scenario(logs=logs, log_page=2)
    response = scenario.handle(
        httpx.Request(
            "GET",
            "https://api.example.test/v1/logs",
            params={"ownerId": OWNER, "resource": API_1, "startTime": "2026-11-30T11:00:00Z",
                    "endTime": "2026-11-30T12:00:00Z"},
        )
    )  # fmt: skip
    assert_valid("logs", response.json())
    with scenario.client() as client:
        entries = client.list_logs(OWNER, [API_1], start=START, end=NOW)
    assert [(e.message, e.level, e.resource, e.type) for e in entries] == [
        (f"line {i}", "error", API_1, "app") for i in range(3)
    ]
    assert entries[0].timestamp.tzinfo is not None


def test_event_lists_are_spec_valid_and_parse() -> None:
    failed = event(1, API_1, "server_failed", 3, {"reason": {"evicted": False, "nonZeroExit": 1}})
    failed["id"] = "evt-" + "a" * 20
    restarted = event(2, API_1, "server_restarted", 1, {"triggeredByUser": None})
    restarted["id"] = "evt-" + "b" * 20
    answer = [{"cursor": "c1", "event": restarted}, {"cursor": "c2", "event": failed}]
    assert_valid("event-list", answer)
    bad = [{"cursor": "c1", "event": {**failed, "type": "server_exploded"}}]
    assert violations("event-list", bad)
    with Scenario(events={API_1: [restarted, failed]}).client() as client:
        events = client.list_events(API_1, start=datetime(2026, 11, 30, 11, tzinfo=UTC), end=NOW)
    assert [(e.type, e.service_id) for e in events] == [
        ("server_restarted", API_1),
        ("server_failed", API_1),
    ]
    assert events[1].details["reason"]["nonZeroExit"] == 1
