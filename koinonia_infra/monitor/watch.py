"""`monitor --watch`: the screen refreshed in place (rich Live) every `interval` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import RenderableType
from rich.live import Live

from koinonia_infra.console import output
from koinonia_infra.monitor.model import MonitorReport


def pause(seconds: float) -> None:
    """Between two refreshes (looked up at each call, so a test can shorten it)."""
    time.sleep(seconds)


def watch_loop(
    read: Callable[[], MonitorReport],
    render: Callable[[MonitorReport], RenderableType],
    interval: float,
    iterations: int | None,
    *,
    sleep: Callable[[float], None] | None = None,
) -> MonitorReport | None:
    """Refresh until interrupted or `iterations` reads; the last report is returned."""
    last: MonitorReport | None = None
    done = 0
    with Live(console=output.out, auto_refresh=False, transient=False) as live:
        while iterations is None or done < iterations:
            last = read()
            done += 1
            live.update(render(last), refresh=True)
            if iterations is not None and done >= iterations:
                break
            (sleep or pause)(interval)
    return last
