"""Every signal that ends the process gracefully (INT, TERM, HUP, QUIT) resumes the drilled
instance: a closed terminal or a dropped SSH session (SIGHUP) is the likeliest accident."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest
from sandbox_ops import Drill, suspended, wait_healthy

from koinonia_infra.ops.common import deferred_signals, sigterm_as_interrupt

# Run in a fresh interpreter: on code that does not handle the signal, the default action ends the
# process (what the operator saw), and must not end the test run.
_RAISE = """
import signal, sys
from koinonia_infra.ops.common import sigterm_as_interrupt
sig = getattr(signal, sys.argv[1])
if sys.argv[2] == "ignored":
    signal.signal(sig, signal.SIG_IGN)
try:
    with sigterm_as_interrupt():
        signal.raise_signal(sig)
    print("still running")
except KeyboardInterrupt as exc:
    print(f"interrupted by {exc}")
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGQUIT"])
def test_a_stop_signal_becomes_an_interrupt(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RAISE, name, "default"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"interrupted by {name}"


def test_a_hangup_ignored_by_nohup_stays_ignored() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RAISE, "SIGHUP", "ignored"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "still running"


def test_every_stop_signal_is_held_during_cleanup_and_handlers_come_back() -> None:
    leaked: list[int] = []

    def outer(signum: int, _frame: object) -> None:
        leaked.append(signum)  # what would have ended the process during the resume

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    saved = {s: signal.signal(s, outer) for s in stops}
    try:
        held: list[int] = []
        with deferred_signals(held):
            for s in stops:
                signal.raise_signal(s)
        assert held == list(stops)
        assert leaked == []
        with sigterm_as_interrupt():
            pass
        assert all(signal.getsignal(s) is outer for s in stops)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@pytest.mark.integration
def test_hangup_and_quit_mid_drill_resume_the_instance(sandbox: Any) -> None:
    # One sandbox, two drills in turn: each signal must bring api-1 back.
    for sig in (signal.SIGHUP, signal.SIGQUIT):
        drill = Drill(sandbox, 1, duration=60)
        try:
            drill.wait_for("no longer receives traffic")
            assert suspended(sandbox, 1)
            drill.proc.send_signal(sig)
            code, stdout, stderr = drill.finish(timeout=30)
        finally:
            drill.kill()
        assert code == 130, f"{sig.name}: {stderr}"
        data = json.loads(stdout)
        assert data["outcome"] == "interrupted"
        assert data["error"] == f"interrupted by {sig.name}"
        assert data["resumed"] is True
        assert "api-1 resumed" in stderr
        assert not suspended(sandbox, 1)
        wait_healthy(sandbox, 1)


@pytest.mark.integration
def test_a_dropped_session_resumes_the_instance_though_nothing_can_be_printed(
    sandbox: Any,
) -> None:
    # A dropped SSH session: SIGHUP, and every later write to the terminal fails.
    drill = Drill(sandbox, 1, duration=60)
    try:
        drill.wait_for("no longer receives traffic")
        assert drill.proc.stdout is not None
        assert drill.proc.stderr is not None
        drill.proc.stdout.close()
        drill.proc.stderr.close()
        drill.proc.send_signal(signal.SIGHUP)
        drill.proc.wait(timeout=30)
    finally:
        drill.kill()
    assert drill.proc.returncode != -signal.SIGHUP
    assert not suspended(sandbox, 1)
    wait_healthy(sandbox, 1)
