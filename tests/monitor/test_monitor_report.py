"""`monitor` over a Render API that answers in the spec's shapes: what the report, the rules and
the user see."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from fake_render import (
    API_1,
    API_2,
    EDGE,
    KEY,
    KV,
    NOW,
    OWNER,
    PG,
    Scenario,
    descriptor,
    event,
    log_entry,
)

from koinonia_infra.errors import UsageError
from koinonia_infra.monitor.collect import collect_monitor, resolution_for
from koinonia_infra.monitor.model import MonitorReport
from koinonia_infra.monitor.redact import redact_line
from koinonia_infra.monitor.render import BARS, render_markdown, sparkline
from koinonia_infra.monitor.run import parse_since
from koinonia_infra.settings import MonitorSettings, VerifySettings

HOUR = timedelta(hours=1)


def collect(scenario: Scenario, monitor: MonitorSettings | None = None) -> MonitorReport:
    with scenario.client() as client:
        return collect_monitor(descriptor(), client, since=HOUR, monitor=monitor, now=NOW)


def rules(report: MonitorReport) -> list[tuple[str, str]]:
    return [(a.rule, a.target.split()[0]) for a in report.alerts]


def test_a_healthy_deployment_fires_nothing_and_reports_every_figure() -> None:
    report = collect(Scenario())
    assert rules(report) == []
    api1 = report.targets[0]
    assert api1.role == "api-1"
    assert api1.cpu_percent == pytest.approx(40.0)  # 0.4 CPU of a 1-CPU plan
    assert api1.memory_mb == pytest.approx(600)
    assert api1.memory_percent == pytest.approx(600 / 2048 * 100)
    assert api1.requests == 6000
    assert api1.request_share_percent == pytest.approx(50.0)
    assert api1.p95_ms == pytest.approx(120.0)
    assert api1.p50_ms == pytest.approx(48.0)
    assert api1.p99_ms == pytest.approx(180.0)
    assert api1.error_rate_percent == 0
    pg = next(d for d in report.datastores if d.role == "postgres")
    assert pg.resource_id == PG
    assert pg.connections == 7
    assert pg.memory_mb == pytest.approx(300)


def test_the_reads_follow_the_spec_one_call_per_metric_for_every_service() -> None:
    scenario = Scenario()
    collect(scenario)
    cpu = next(r for r in scenario.calls if r.url.path == "/v1/metrics/cpu")
    # Repeated `resource` keys (ORed by Render), RFC 3339 times, resolution ≥ 30 s.
    assert cpu.url.params.get_list("resource") == [API_1, API_2, EDGE, PG, KV]
    assert cpu.url.params["startTime"] == "2026-11-30T11:00:00Z"
    assert cpu.url.params["endTime"] == "2026-11-30T12:00:00Z"
    assert int(cpu.url.params["resolutionSeconds"]) >= 30
    metric_calls = [r for r in scenario.calls if r.url.path.startswith("/v1/metrics/")]
    assert len(metric_calls) == 8
    assert {r.url.params["resolutionSeconds"] for r in metric_calls} == {"90"}
    latency = next(r for r in scenario.calls if r.url.path == "/v1/metrics/http-latency")
    assert latency.url.params.get_list("quantile") == ["0.5", "0.95", "0.99"]
    requests = next(r for r in scenario.calls if r.url.path == "/v1/metrics/http-requests")
    assert requests.url.params["aggregateBy"] == "statusCode"
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in scenario.calls)


def test_cpu_over_the_threshold_fires_naming_target_value_and_threshold() -> None:
    busy = [0.3] * 50 + [0.95] * 10  # the last ten minutes at 95 % of the plan's CPU
    report = collect(Scenario(cpu={API_1: 0.3, API_2: busy}))
    assert rules(report) == [("cpu", "api-2")]
    alert = report.alerts[0]
    assert alert.measured == "95 %"
    assert alert.threshold == "80 %"
    assert alert.message == "cpu on api-2 (koinonia-sms-backend-2): 95 % (threshold 80 %)"


def test_thresholds_come_from_koinonia_monitor_then_koinonia_verify() -> None:
    scenario = Scenario(p95_ms={API_1: 200.0, API_2: 200.0})
    assert rules(collect(scenario)) == []  # verify's default p95 is 250 ms
    strict = MonitorSettings(p95_ms=150, cpu_percent=30)
    assert sorted(rules(collect(Scenario(p95_ms={API_1: 200.0, API_2: 100.0}), strict))) == [
        ("cpu", "api-1"),
        ("cpu", "api-2"),
        ("p95 latency", "api-1"),
    ]
    with Scenario(p95_ms={API_1: 200.0, API_2: 100.0}).client() as client:
        report = collect_monitor(
            descriptor(), client, since=HOUR, now=NOW, verify=VerifySettings(p95_ms=180)
        )
    assert rules(report) == [("p95 latency", "api-1")]
    assert report.alerts[0].threshold == "180 ms"


def test_error_rate_and_split_rules() -> None:
    report = collect(Scenario(requests={API_1: {"200": 130.0, "503": 3.0}, API_2: {"200": 60.0}}))
    assert sorted(rules(report)) == [
        ("error rate", "api-1"),
        ("split", "api-1"),
        ("split", "api-2"),
    ]
    err = next(a for a in report.alerts if a.rule == "error rate")
    assert err.measured.startswith("2.26 % 5xx")
    split = next(a for a in report.alerts if a.rule == "split" and a.target.startswith("api-1"))
    assert split.threshold == "50.0 ± 10 points"


def test_memory_over_ninety_percent_of_the_plan_fires() -> None:
    report = collect(Scenario(memory_mb={API_1: 1900, API_2: 600}))
    assert rules(report) == [("memory", "api-1")]


def test_a_suspended_instance_or_one_with_no_running_instance_is_down() -> None:
    report = collect(Scenario(suspended={API_1}, running={API_1: 1, API_2: 0}))
    down = [(a.rule, a.target.split()[0], a.measured) for a in report.alerts]
    assert ("instance down", "api-1", "suspended") in down
    assert ("instance down", "api-2", "no instance running (instance-count 0)") in down


def test_the_edge_down_is_an_alert_of_its_own() -> None:
    report = collect(Scenario(running={API_1: 1, API_2: 1, EDGE: 0}))
    assert rules(report) == [("edge down", "edge")]


def test_a_server_failed_event_without_recovery_is_down_and_listed() -> None:
    events = {
        API_2: [
            event(1, API_2, "server_failed", 5, {"reason": {"evicted": False, "nonZeroExit": 137}}),
            event(2, API_2, "deploy_started", 20),
        ],
        API_1: [
            event(3, API_1, "server_restarted", 2, {"triggeredByUser": None}),
            event(4, API_1, "server_failed", 10, {"reason": {"evicted": True}}),
        ],
    }
    report = collect(Scenario(events=events))
    assert rules(report) == [("instance down", "api-2")]
    shown = [(e.role, e.type) for e in report.events]
    assert shown == [("api-1", "server_restarted"), ("api-2", "server_failed"),
                     ("api-1", "server_failed")]  # fmt: skip
    assert report.events[1].detail == "nonZeroExit=137"


def test_error_logs_are_counted_paged_by_time_and_redacted() -> None:
    logs = [log_entry(i, API_1, f"request {i} failed") for i in range(7)]
    logs.append(log_entry(8, API_2, "db: connect postgres://app:hunter2secret@db:5432/app refused"))
    scenario = Scenario(logs=logs, log_page=3)
    report = collect(scenario)
    assert report.logs.error_count == 8
    pages = [r for r in scenario.calls if r.url.path == "/v1/logs"]
    assert len(pages) == 3
    assert pages[0].url.params["ownerId"] == OWNER
    assert pages[0].url.params.get_list("level") == ["error"]
    assert pages[1].url.params["startTime"] == logs[3]["timestamp"]  # nextStartTime followed
    assert report.logs.first[0] == "api-1: request 0 failed"
    markdown = render_markdown(collect(Scenario(logs=logs[-1:])))
    assert "hunter2secret" not in markdown
    assert "postgres://app:\\[secret\\]@db:5432/app refused" in markdown


def test_no_secret_reaches_the_json_or_markdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_API_KEY", KEY)
    logs = [log_entry(1, API_1, f"auth header Bearer {KEY} and token=abcd1234efgh")]
    report = collect(Scenario(logs=logs))
    for text in (json.dumps(report.to_json()), render_markdown(report)):
        assert KEY not in text
        assert "abcd1234efgh" not in text


def test_redaction_helper_hides_each_kind_of_secret() -> None:
    assert redact_line("redis://:p4ssw0rd@127.0.0.1:6379/0") == "redis://:[secret]@127.0.0.1:6379/0"
    assert "s3cr3t" not in redact_line('{"password": "s3cr3t"}')
    assert redact_line("x" * 500, max_length=10) == "x" * 9 + "…"
    assert redact_line("value \x1b[2J here") == "value \\x1b[2J here"
    assert redact_line("known value inside", known=["known value"]) == "[secret] inside"


def test_sparklines_scale_to_their_top_and_leave_gaps() -> None:
    assert sparkline([0, 50, 100], top=100) == BARS[0] + BARS[4] + BARS[7]
    assert sparkline([None, 1.0, None, 2.0]) == " " + BARS[4] + " " + BARS[7]
    assert sparkline([None, None]) == "  "
    report = collect(Scenario(cpu={API_1: [0.1] * 30 + [0.9] * 30, API_2: 0.4}))
    spark = sparkline(report.targets[0].cpu_series, top=100)
    assert spark[0] == BARS[1]
    assert spark[-1] == BARS[6]
    assert f"`{spark}`" in render_markdown(report)


def test_markdown_report_names_the_alerts_in_a_table() -> None:
    markdown = render_markdown(collect(Scenario(suspended={API_2})))
    assert "**1 alert rule(s) fired**" in markdown
    assert "| instance down | api-2 (koinonia-sms-backend-2) | suspended | running |" in markdown
    assert "| api-1 koinonia-sms-backend | up |" in markdown


def test_json_has_the_documented_fields() -> None:
    data = collect(Scenario(suspended={API_2})).to_json()
    assert data["fired"] is True
    assert data["alerts"][0] == {
        "rule": "instance down",
        "target": "api-2 (koinonia-sms-backend-2)",
        "measured": "suspended",
        "threshold": "running",
        "message": "instance down on api-2 (koinonia-sms-backend-2): suspended (threshold running)",
    }
    first = data["targets"][0]
    for key in ("cpuPercent", "memoryPercent", "requestSharePercent", "p95Ms", "errorRatePercent",
                "cpuSeries", "requestSeries", "p95Series"):  # fmt: skip
        assert key in first


def test_a_refused_metric_is_a_warning_not_a_failure() -> None:
    scenario = Scenario()
    original = scenario.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/metrics/http-latency":
            return httpx.Response(400, json={"message": "bad quantile"})
        return original(request)

    scenario.handle = handle  # type: ignore[method-assign]
    report = collect(scenario)
    assert report.targets[0].p95_ms is None
    assert any("metrics/http-latency" in w and "bad quantile" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", 3600), ("15m", 900), ("1h30m", 5400), ("2d", 172800)]
)
def test_since_accepts_durations(text: str, seconds: int) -> None:
    assert parse_since(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "-5m", "30s", "31d", "1h banana"])
def test_since_refuses_anything_else_in_one_line(text: str) -> None:
    with pytest.raises(UsageError, match="--since"):
        parse_since(text)


def test_resolution_keeps_about_forty_bars_and_the_spec_minimum() -> None:
    assert resolution_for(timedelta(minutes=5)) == 30
    assert resolution_for(HOUR) == 90
    assert resolution_for(timedelta(days=1)) == 2160
