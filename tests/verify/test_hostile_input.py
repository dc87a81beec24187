"""Every bad answer a /health can give fails with one line: never a traceback, never a hang,
never unbounded memory. Each case goes through both clients (httpx for health reads, the lean
client for traffic) and through the health check evaluation a user sees."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from koinonia_infra.descriptor import parse_descriptor
from koinonia_infra.measure.fetch import fetch
from koinonia_infra.measure.load import burst
from koinonia_infra.verify.checks import Observations, PlannedCheck, evaluate
from koinonia_infra.verify.model import VerifyOptions

TIMEOUT = 1.5
DESCRIPTOR = parse_descriptor(
    {
        "edgeUrl": "http://127.0.0.1:1",
        "instances": [
            {"number": 1, "name": "a", "serviceId": "s", "url": "http://x", "privateAddress": "x:1"}
        ],
    },
    source="test",
)


def health_reason(url: str) -> tuple[str, str | None, float]:
    """(status, reason, seconds) of the instance-health check against `url`."""
    t0 = time.monotonic()
    fetched = fetch(url, timeout=TIMEOUT)
    elapsed = time.monotonic() - t0
    check = PlannedCheck(
        id="instance-health", name="Instance health", target="api-1", probe="health",
        threshold="t", url=url,
    )  # fmt: skip
    result = evaluate(check, Observations(health={url: fetched}), DESCRIPTOR, VerifyOptions())
    return result.status, result.reason, elapsed


def assert_one_line(reason: str | None) -> str:
    assert reason
    assert "\n" not in reason
    assert "Traceback" not in reason
    assert len(reason) < 300
    return reason


# (path, expected words in the health check's reason, expected words in the traffic sample)
CASES = [
    ("/nonjson", "not JSON", None),
    ("/wrongshape", "not an object", None),
    ("/missing", "lacks database, redis", None),
    ("/badutf8", "not valid UTF-8", None),
    ("/huge-declared", "larger than", "larger than"),
    ("/huge-chunked", "larger than", "larger than"),
    ("/endless", "timed out", "timed out"),
    ("/stall", "timed out", "timed out"),
    ("/redirect", "redirect loop", None),
    ("/500", "HTTP 500", None),
    ("/reset", "connection closed", "connection closed"),
    ("/garbage", "invalid HTTP response", "invalid HTTP response"),
]


@pytest.mark.parametrize(("path", "health_words", "traffic_words"), CASES)
def test_bad_health_answer_fails_with_one_line(
    hostile_url: str, path: str, health_words: str, traffic_words: str | None
) -> None:
    status, reason, elapsed = health_reason(hostile_url + path)
    assert status == "fail"
    assert health_words in assert_one_line(reason)
    assert elapsed < TIMEOUT + 2

    t0 = time.monotonic()
    result = burst(hostile_url + path, requests=2, concurrency=2, timeout=TIMEOUT)
    assert time.monotonic() - t0 < TIMEOUT + 2
    assert len(result.samples) == 2
    for sample in result.samples:
        # A 200 with a useless body still counts against the distribution: no instance named.
        assert not sample.ok or sample.upstream is None
        if traffic_words is not None:
            assert traffic_words in assert_one_line(sample.error)


def test_healthy_answer_passes(hostile_url: str) -> None:
    status, reason, _ = health_reason(hostile_url + "/health")
    assert (status, reason) == ("pass", None)
    sample = burst(hostile_url + "/health", requests=3, concurrency=1).samples[0]
    assert sample.ok
    assert sample.upstream == "api-1"  # no header: the body's instance


def test_refused_connection(unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}/health"
    status, reason, _ = health_reason(url)
    assert status == "fail"
    assert "connection refused" in assert_one_line(reason)
    assert "connection refused" in assert_one_line(burst(url, 1, 1).samples[0].error)


def test_dns_failure() -> None:
    url = "http://koinonia-verify-test.invalid/health"
    status, reason, elapsed = health_reason(url)
    assert status == "fail"
    assert "DNS lookup failed" in assert_one_line(reason)
    assert elapsed < TIMEOUT + 2
    assert "DNS lookup failed" in assert_one_line(
        burst(url, 1, 1, timeout=TIMEOUT).samples[0].error
    )


def test_tls_error(plain_http_port: int) -> None:
    url = f"https://127.0.0.1:{plain_http_port}/health"
    status, reason, _ = health_reason(url)
    assert status == "fail"
    assert "TLS error" in assert_one_line(reason)
    assert "TLS error" in assert_one_line(burst(url, 1, 1, timeout=TIMEOUT).samples[0].error)


@pytest.mark.parametrize("path", ["/huge-declared", "/huge-chunked"])
def test_memory_stays_bounded_on_a_100_mb_body(hostile_url: str, path: str) -> None:
    tracemalloc.start()
    try:
        fetch(hostile_url + path, timeout=TIMEOUT)
        burst(hostile_url + path, requests=2, concurrency=2, timeout=TIMEOUT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
