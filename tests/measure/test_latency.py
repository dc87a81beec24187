"""ONE percentile and ONE latency summary rule, seen the same way by verify, drill and rollout."""

from __future__ import annotations

from koinonia_infra.descriptor import Descriptor, parse_descriptor
from koinonia_infra.measure.attribution import Attributor
from koinonia_infra.measure.load import BurstResult
from koinonia_infra.measure.samples import Sample, latency_summary, percentile
from koinonia_infra.ops.common import TrafficTotals, summarize
from koinonia_infra.ops.render import _md_traffic, _traffic_rows
from koinonia_infra.verify.checks import Observations, evaluate, plan_checks
from koinonia_infra.verify.model import VerifyOptions


def _descriptor() -> Descriptor:
    return parse_descriptor(
        {
            "edgeUrl": "http://edge.test",
            "edge": {"name": "koinonia-edge", "serviceId": "srv-edge"},
            "instances": [
                {
                    "number": n,
                    "name": f"svc-{n}",
                    "serviceId": f"srv-{n}",
                    "url": f"http://api-{n}.test",
                    "privateAddress": f"svc-{n}:8080",
                }
                for n in (1, 2)
            ],
        },
        source="test",
    )


def _answered(ms: float, t: float = 0.0) -> Sample:
    return Sample(started=t, latency_ms=ms, status=200, upstream="svc-1:8080", error=None)


def _refused(ms: float) -> Sample:
    return Sample(started=0.0, latency_ms=ms, status=None, upstream=None, error="timed out")


def _drill_summary(samples: list[Sample]) -> dict[str, str]:
    totals = TrafficTotals(samples=samples, duration=1.0, target_rate=20.0, achieved_rate=20.0)
    return dict(_traffic_rows(summarize(totals, Attributor(_descriptor()))))


def _verify_latency(samples: list[Sample]) -> str:
    descriptor = _descriptor()
    options = VerifyOptions()
    check = next(c for c in plan_checks(descriptor, options) if c.id == "latency")
    burst = BurstResult(
        url="http://edge.test/health", samples=samples, elapsed_s=1.0, concurrency=1
    )
    return evaluate(check, Observations(burst=burst), descriptor, options).measured


ONE_TO_TWENTY = [_answered(float(ms), t=ms) for ms in range(1, 21)]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile(values, 99) == 20.0
    assert percentile([7.0], 50) == 7.0
    assert percentile([], 50) is None


def test_verify_and_drill_report_the_same_p50_for_1_to_20_ms() -> None:
    # Before: verify said p50 10 and drill/rollout said 11 for the same latencies.
    assert "p50 10.0" in _verify_latency(ONE_TO_TWENTY)
    assert _drill_summary(ONE_TO_TWENTY)["latency p50 / p95 / p99 / max"] == "10 / 19 / 20 / 20 ms"


def test_requests_without_an_answer_have_no_latency_in_any_summary() -> None:
    # Five timeouts of 5 s each: failures, counted as such, never a 5 s latency.
    samples = ONE_TO_TWENTY + [_refused(5000.0) for _ in range(5)]
    rows = _drill_summary(samples)
    assert rows["latency p50 / p95 / p99 / max"] == "10 / 19 / 20 / 20 ms"
    assert rows["requests (failed)"] == "25 (5)"
    assert latency_summary(samples).max_ms == 20.0
    assert "p99 20.0" in _verify_latency(samples)


def test_an_answered_error_status_is_a_latency_like_any_answer() -> None:
    slow_503 = Sample(started=0.0, latency_ms=900.0, status=503, upstream=None, error=None)
    assert latency_summary([*ONE_TO_TWENTY, slow_503]).max_ms == 900.0
    assert _drill_summary([*ONE_TO_TWENTY, slow_503])["latency p50 / p95 / p99 / max"].endswith(
        "/ 900 ms"
    )


def test_an_empty_run_has_no_latency_shown_as_a_dash_and_json_null() -> None:
    # Before: drill and rollout reported p95 0.0 for a run without a single answer.
    totals = TrafficTotals(
        samples=[_refused(10.0)], duration=1.0, target_rate=20.0, achieved_rate=1.0
    )
    summary = summarize(totals, Attributor(_descriptor()))
    assert summary.to_json()["p95LatencyMs"] is None
    assert summary.to_json()["maxLatencyMs"] is None
    assert dict(_traffic_rows(summary))["latency p50 / p95 / p99 / max"] == "- / - / - / - ms"
    assert "| latency p50 / p95 / p99 / max | - / - / - / - ms |" in _md_traffic(summary)
    assert latency_summary([]).as_dict()["p95Ms"] is None
