"""The traffic module's contract: burst and steady modes, samples, the drill's helpers."""

from __future__ import annotations

import socket
import time

import pytest
from verify_servers import FakeDeployment

from koinonia_infra.descriptor import parse_descriptor
from koinonia_infra.errors import UsageError
from koinonia_infra.measure.attribution import Attributor
from koinonia_infra.measure.load import SteadyTraffic, burst
from koinonia_infra.measure.samples import (
    Sample,
    latency_summary,
    percentile,
)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_latency_summary_ignores_failed_requests() -> None:
    samples = [
        Sample(0.0, 10.0, 200, "a", None),
        Sample(0.0, 5000.0, None, None, "timed out after 5s (x)"),
        Sample(0.0, 30.0, 200, "a", None),
    ]
    summary = latency_summary(samples)
    assert (summary.count, summary.p50_ms, summary.max_ms) == (2, 10.0, 30.0)


def test_attribution_accepts_header_and_body_labels(
    fake_deployment: FakeDeployment,
) -> None:
    descriptor = parse_descriptor(fake_deployment.descriptor(), source="t")
    attribution = Attributor(descriptor)
    second = descriptor.instances[1]
    for label in (second.private_address, "2", "api-2", second.name, second.service_id):
        found = attribution.instance(label)
        assert found is not None
        assert found.number == 2
    assert attribution.instance("10.0.0.1:8080") is None
    assert attribution.instance(None) is None


def test_burst_attributes_every_answer(fake_deployment: FakeDeployment) -> None:
    result = burst(fake_deployment.edge_url + "/health", requests=40, concurrency=4)
    assert len(result.samples) == 40
    assert all(s.ok for s in result.samples)
    ports = {f"127.0.0.1:{i.port}" for i in fake_deployment.instances}
    assert {s.upstream for s in result.samples} == ports
    assert result.requests_per_second > 0
    assert [s.started for s in result.samples] == sorted(s.started for s in result.samples)


def test_bad_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not an http"):
        burst("ftp://example.com/", 1, 1)
    with pytest.raises(UsageError, match="rate"):
        SteadyTraffic("http://127.0.0.1:1/", rate=0)


def test_steady_traffic_holds_its_rate(fake_deployment: FakeDeployment) -> None:
    traffic = SteadyTraffic(fake_deployment.edge_url + "/health", rate=200).start()
    time.sleep(2.0)
    mid = traffic.samples()
    result = traffic.stop()
    assert 0 < len(mid) <= len(result.samples)
    assert result.sent == len(result.samples)
    assert result.scheduled == result.sent + result.missed
    # ±5 % of the asked rate, and no sample lost.
    assert abs(result.achieved_rate - 200) <= 10, result
    assert result.failed == 0
    starts = [s.started for s in result.samples]
    assert result.started <= starts[0]
    assert starts[-1] <= result.stopped


def test_steady_traffic_counts_failures_per_request(
    fake_deployment: FakeDeployment,
) -> None:
    with SteadyTraffic(fake_deployment.edge_url + "/health", rate=100, timeout=1) as traffic:
        time.sleep(0.5)
        for inst in fake_deployment.instances:
            inst.status = 500
        time.sleep(0.5)
    result = traffic.stop()
    assert result.failed > 0
    assert result.failed < result.sent
    failed = [s for s in result.samples if not s.ok]
    assert all(s.status == 500 for s in failed)


def test_warmup_is_left_out_of_the_samples_but_its_failures_are_counted() -> None:
    # A port nothing listens on: every request fails, warm-up included.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = burst(f"http://127.0.0.1:{port}/", 6, 2, timeout=1.0, warmup=4)
    assert len(result.samples) == 6
    assert (result.warmup_requests, result.warmup_failures) == (4, 4)


def test_warmup_requests_are_sent_but_not_sampled(
    fake_deployment: FakeDeployment,
) -> None:
    before = fake_deployment.rr  # requests the fake edge has answered
    result = burst(fake_deployment.edge_url + "/health", requests=10, concurrency=2, warmup=4)
    assert fake_deployment.rr - before == 14
    assert len(result.samples) == 10
    assert (result.warmup_requests, result.warmup_failures) == (4, 0)
