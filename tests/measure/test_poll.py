"""ONE poll-until-deadline helper: the last observation back, backoff, never past the deadline."""

from __future__ import annotations

from koinonia_infra.measure.health import HealthResult
from koinonia_infra.measure.poll import poll, wait_healthy


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.pauses: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.pauses.append(round(seconds, 6))
        self.t += seconds


def test_returns_the_first_good_observation_without_pausing() -> None:
    clock = FakeClock()
    assert poll(lambda: 7, lambda v: v == 7, deadline=10, clock=clock.now, sleep=clock.sleep) == 7
    assert clock.pauses == []


def test_a_timed_out_wait_returns_what_it_saw_last() -> None:
    clock = FakeClock()
    seen = iter(range(100))
    last = poll(
        lambda: next(seen),
        lambda _v: False,
        deadline=3.0,
        clock=clock.now,
        sleep=clock.sleep,
        interval=0.5,
        backoff=2.0,
        max_interval=1.0,
    )
    # Pauses back off 0.5 -> 1.0 (capped), the last one cut to the deadline.
    assert clock.pauses == [0.5, 1.0, 1.0, 0.5]
    assert clock.t == 3.0
    assert last == 4  # five observations: at 0, 0.5, 1.5, 2.5 and 3.0 s


def test_observes_once_even_past_the_deadline() -> None:
    clock = FakeClock()
    clock.t = 50.0
    assert poll(lambda: "late", lambda _v: False, deadline=1.0, clock=clock.now) == "late"


def test_before_sleep_hears_each_pause_with_the_observation() -> None:
    clock = FakeClock()
    heard: list[tuple[int, float]] = []
    answers = iter([1, 2, 0])
    poll(
        lambda: next(answers),
        lambda v: v == 0,
        deadline=60,
        clock=clock.now,
        sleep=clock.sleep,
        interval=1.0,
        before_sleep=lambda v, pause: heard.append((v, pause)),
    )
    assert heard == [(1, 1.0), (2, 1.5)]


def test_wait_healthy_reports_the_last_unhealthy_answer_at_the_deadline() -> None:
    clock = FakeClock()
    answers = iter(HealthResult(False, f"HTTP 503 degraded #{i}") for i in range(1000))
    result = wait_healthy(
        lambda _url: next(answers),
        "http://x/health",
        timeout=10,
        clock=clock.now,
        sleep=clock.sleep,
    )
    assert not result.ok
    assert result.detail.startswith("HTTP 503 degraded #")
    assert clock.t == 10.0
    assert max(clock.pauses) == 2.0  # backed off to its ceiling
