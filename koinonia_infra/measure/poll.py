"""Waiting: poll until a condition holds or a deadline passes."""

from __future__ import annotations

from collections.abc import Callable

from koinonia_infra.measure.health import HealthResult, Probe

Sleep = Callable[[float], None]


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    clock: Callable[[], float],
    sleep: Sleep,
    interval: float = 0.05,
) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass on `clock`."""
    deadline = clock() + timeout
    while True:
        if condition():
            return True
        if clock() >= deadline:
            return False
        sleep(interval)


def wait_healthy(
    probe: Probe, url: str, *, timeout: float, clock: Callable[[], float], sleep: Sleep
) -> HealthResult:
    """Probe with backoff until healthy or the deadline; returns the last observation."""
    deadline = clock() + timeout
    delay = 0.1
    while True:
        result = probe(url)
        if result.ok or clock() >= deadline:
            return result
        sleep(min(delay, max(0.0, deadline - clock())))
        delay = min(delay * 1.5, 2.0)
