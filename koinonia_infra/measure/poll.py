"""Waiting: ONE poll-until-deadline helper, which returns the last observation.

Every wait of the tool is "observe; stop when the observation is good enough or time is up;
else pause and observe again". `poll` is that loop once, so each caller says only what it
observes and what "done" means, and always gets back what it saw last (a timed-out wait
reports the last answer, never a bare False).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from koinonia_infra.measure.health import HealthResult, Probe

Sleep = Callable[[float], None]
Clock = Callable[[], float]
T = TypeVar("T")


def poll(
    observe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    deadline: float,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    interval: float = 0.1,
    backoff: float = 1.5,
    max_interval: float = 2.0,
    before_sleep: Callable[[T, float], None] | None = None,
) -> T:
    """Observe until `done(observation)` or `deadline` (on `clock`) passes; the last observation.

    Observes at least once, even past the deadline. Pauses start at `interval` and grow by
    `backoff` up to `max_interval` (`backoff=1` keeps them fixed, for waits that time what they
    wait for), never past the deadline. `before_sleep(observation, pause)` is told each pause.
    """
    delay, ceiling = interval, max(interval, max_interval)
    while True:
        observation = observe()
        if done(observation):
            return observation
        remaining = deadline - clock()
        if remaining <= 0:
            return observation
        pause = min(delay, remaining)
        if before_sleep is not None:
            before_sleep(observation, pause)
        sleep(pause)
        delay = min(delay * backoff, ceiling)


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    clock: Clock,
    sleep: Sleep,
    interval: float = 0.05,
) -> bool:
    """Poll `condition` at a fixed `interval` until it holds or `timeout` seconds pass on `clock`.

    Fixed, not backed off: the drill and the rollout time what they wait for (drained, rejoined)
    to within `interval`."""
    return poll(
        condition,
        bool,
        deadline=clock() + timeout,
        clock=clock,
        sleep=sleep,
        interval=interval,
        backoff=1.0,
        max_interval=interval,
    )


def wait_healthy(
    probe: Probe, url: str, *, timeout: float, clock: Clock, sleep: Sleep
) -> HealthResult:
    """Probe with backoff until healthy or the deadline; returns the last observation."""
    return poll(
        lambda: probe(url),
        lambda result: result.ok,
        deadline=clock() + timeout,
        clock=clock,
        sleep=sleep,
        interval=0.1,
        backoff=1.5,
        max_interval=2.0,
    )
