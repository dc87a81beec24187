"""The failover drill against a simulated deployment (fakes at the client, traffic, probe seams)."""

from __future__ import annotations

import signal
from dataclasses import replace

import httpx
import pytest
from ops_fakes import REQUIRED_KEYS, World

from koinonia_infra.errors import OperationFailed
from koinonia_infra.ops.common import deferred_signals, sigterm_as_interrupt
from koinonia_infra.ops.drill import DrillReport, run_failover_drill
from koinonia_infra.ops.render import drill_markdown
from koinonia_infra.ops.timing import sandbox_timing, timing_for


def drill(world: World, **kwargs: object) -> DrillReport:
    # The default world starts a resumed instance at once, like the fast sandbox.
    options: dict[str, object] = {
        "instance": 1,
        "duration": 2.0,
        "rate": 200.0,
        "settle": 0.5,
        "timing": sandbox_timing("fast"),
    }
    options.update(kwargs)
    return run_failover_drill(
        world.descriptor(),
        world.client(),
        start_traffic=world.start_traffic,
        probe=world.probe,
        sleep=world.sleep,
        **options,  # type: ignore[arg-type]
    )


def api_calls(world: World) -> list[str]:
    return [c for c in world.calls if c.startswith("POST")]


def test_healthy_drill_passes_and_measures_drain_and_rejoin() -> None:
    world = World()
    report = drill(world)
    data = report.to_json()
    assert data.keys() >= REQUIRED_KEYS
    assert report.outcome == "passed", report.error
    assert report.exit_code == 0
    assert data["failedRequests"] == 0
    assert data["resumed"] is True
    assert data["totalRequests"] > 400
    # The fake edge stops routing 0.3 s after the suspend and routes again 0.8 s after the resume.
    assert 0.25 <= data["secondsUntilDrained"] <= 0.35
    assert 0.75 <= data["secondsToRejoin"] <= 0.9
    assert report.served_by_while_suspended == {"api-2": report.served_by_while_suspended["api-2"]}
    assert api_calls(world) == ["POST /v1/services/srv-1/suspend", "POST /v1/services/srv-1/resume"]
    assert all(c.passed for c in report.checks if c.gating)
    assert world.calls[-1] == "traffic stop"


def test_drill_of_instance_two_suspends_only_it() -> None:
    world = World()
    report = drill(world, instance=2)
    assert report.outcome == "passed"
    assert api_calls(world) == ["POST /v1/services/srv-2/suspend", "POST /v1/services/srv-2/resume"]


def test_refuses_with_one_healthy_instance_and_touches_nothing() -> None:
    world = World()
    world.instances[2].up = False
    with pytest.raises(OperationFailed) as info:
        drill(world)
    assert "refusing the failover drill: only 1 of 2 instances are healthy" in str(info.value)
    assert "api-2: connection refused" in str(info.value)
    assert api_calls(world) == []
    assert world.traffic_started is None


def test_refuses_a_single_instance_deployment() -> None:
    world = World(instances=1)
    with pytest.raises(OperationFailed, match="needs at least two instances"):
        drill(world)
    assert api_calls(world) == []


def test_interrupt_mid_drill_still_resumes() -> None:
    world = World()
    world.interrupt_at = world.t + 1.0  # while instance 1 is suspended
    report = drill(world)
    assert report.outcome == "interrupted"
    assert report.exit_code == 130
    assert report.resumed is True
    assert api_calls(world)[-1] == "POST /v1/services/srv-1/resume"
    assert world.instances[1].suspended is False
    assert "resumed during cleanup" in " ".join(e.event for e in report.timeline)


def test_api_error_after_suspend_still_resumes() -> None:
    world = World()

    def fail_reads_after_suspend(request: httpx.Request) -> httpx.Response | None:
        suspended = world.instances[1].suspended
        if suspended and request.method == "GET":
            return httpx.Response(403, json={"message": "nope"})
        return None

    world.api_failure = fail_reads_after_suspend
    report = drill(world)
    assert report.outcome == "error"
    assert report.exit_code == 3
    assert report.error is not None
    assert "key was rejected" in report.error
    assert report.resumed is True
    assert api_calls(world)[-1] == "POST /v1/services/srv-1/resume"


def test_instance_that_never_rejoins_fails_but_is_resumed() -> None:
    world = World()
    world.never_rejoin.add(1)
    timing = replace(sandbox_timing("fast"), healthy_timeout_seconds=3.0)
    report = drill(world, timing=timing)
    assert report.outcome == "failed"
    assert report.exit_code == 1
    assert report.resumed is True
    assert report.seconds_to_rejoin is None
    assert report.error is not None
    assert "not healthy 3s after its resume (sandbox (fast) timing)" in report.error


def test_instance_that_never_drains_times_out_and_is_resumed() -> None:
    world = World()
    world.drain_delay = 1000.0  # the edge keeps routing to the suspended instance
    report = drill(world, timing=replace(sandbox_timing("fast"), drain_timeout_seconds=2.0))
    assert report.outcome == "failed"
    assert report.exit_code == 1
    assert report.error is not None
    assert "api-1 (svc-1) still received traffic 2s after the API reported it" in report.error
    assert report.resumed is True
    assert report.seconds_until_drained is None
    assert api_calls(world)[-1] == "POST /v1/services/srv-1/resume"
    assert world.instances[1].suspended is False


def test_a_resume_that_keeps_failing_is_reported_as_not_resumed() -> None:
    world = World()
    world.interrupt_at = world.t + 1.0

    def refuse_resume(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/resume"):
            return httpx.Response(400, json={"message": "resume refused"})
        return None

    world.api_failure = refuse_resume
    report = drill(world)
    assert report.outcome == "interrupted"
    assert report.resumed is False
    assert world.instances[1].suspended is True
    resumes = [c for c in world.calls if c.endswith("/resume")]
    assert len(resumes) == 3  # tried, then gave up and said so
    resumed = next(c for c in report.checks if c.name == "api-1 resumed")
    assert resumed.passed is False
    assert resumed.measured == "NOT resumed: resume it by hand"
    assert "resumed: **NO: resume it by hand**" in drill_markdown(report)


def test_failed_requests_fail_the_drill() -> None:
    world = World()
    world.instances[2].pending.append((world.t + 1.2, False))  # the survivor dies too
    world.instances[2].pending.append((world.t + 1.6, True))
    report = drill(world)
    assert report.failed_requests > 0
    assert report.outcome == "failed"
    assert report.exit_code == 1
    failing = [c.name for c in report.checks if c.passed is False]
    assert "no failed requests through the edge" in failing


def test_markdown_report_mirrors_the_checklist() -> None:
    report = drill(World())
    text = drill_markdown(report)
    assert "## Runbook failover checklist" in text
    assert "- [x] no failed requests through the edge: 0 of" in text
    assert "- [x] api-1 resumed: resumed" in text
    assert "seconds to rejoin" in text


def test_sigterm_interrupts_like_ctrl_c_and_is_held_during_cleanup() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)
    held: list[int] = []
    with deferred_signals(held):
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert held == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) == before


# ---- Render's sequence, at Render's own timings (the fake clock makes minutes instant) ----------


def render_world() -> World:
    """Render as its sources describe it (ops/timing.py): the suspend answers 202 and is reported
    20 s later; the resume is a deploy (trigger `service_resumed`) live 3 minutes later."""
    world = World(rate=20.0)
    world.suspend_report_delay = 20.0
    world.resume_deploy_seconds = 180.0
    return world


def render_drill(world: World, **kwargs: object) -> DrillReport:
    # No sandbox in the descriptor: the deadlines are Render's.
    return drill(world, timing=timing_for(world.descriptor()), rate=20.0, **kwargs)


def test_drill_waits_on_renders_asynchronous_suspend_and_resume_deploy() -> None:
    world = render_world()
    report = render_drill(world)
    assert report.outcome == "passed", report.error
    assert report.failed_requests == 0
    assert report.timing["target"] == "render"
    # Polled every 5 s (Render's pace) until reported: 20 s after the call, seen by 25 s.
    assert report.seconds_to_suspended is not None
    assert 20.0 <= report.seconds_to_suspended <= 25.5
    suspended = next(c for c in report.checks if c.name == "api-1 suspended via the API")
    assert suspended.passed is True
    assert suspended.measured.startswith("suspended ")
    # At Render's pace, well inside its GET rate limit: a handful of reads, not a tight loop.
    calls = world.calls
    after_suspend = calls[calls.index("POST /v1/services/srv-1/suspend") :]
    polls = after_suspend[: after_suspend.index("POST /v1/services/srv-1/resume")]
    assert 4 <= polls.count("GET /v1/services/srv-1") <= 7
    # The resume's deploy was followed to live, and the rejoin measured after it.
    assert report.resume_deploy == "dep-1-1"
    assert report.seconds_to_resume_live is not None
    assert 180.0 <= report.seconds_to_resume_live <= 184.0
    assert report.seconds_to_rejoin is not None
    assert report.seconds_to_rejoin >= 180.0
    rejoin = next(c for c in report.checks if "receiving traffic again" in c.name)
    assert rejoin.passed is True
    events = [e.event for e in report.timeline]
    assert "API reports api-1 suspended" in events
    assert any(e.startswith("api-1 resume deploy dep-1-1 live after 18") for e in events)
    # K stayed out for the requested duration counted from the suspend taking effect.
    assert report.served_by_while_suspended.get("api-1", 0) == 0
    # The measured sequence is in the report a change record gets.
    text = drill_markdown(report)
    assert "| resume deploy live after | dep-1-1: 18" in text
    assert "| timing | render |" in text


def test_a_resume_whose_deploy_is_never_listed_fails_within_renders_bound() -> None:
    world = render_world()
    world.resume_deploy_listed = False
    report = render_drill(world)
    assert report.outcome == "failed"
    assert report.exit_code == 1
    assert report.error == (
        "no deploy of api-1 (svc-1) was listed within 60s of its resume "
        "(render timing: a resume is a deploy there)"
    )
    assert report.resumed is True


def test_a_failed_resume_deploy_fails_the_drill_naming_it() -> None:
    world = render_world()
    world.resume_deploy_status = "update_failed"
    report = render_drill(world)
    assert report.outcome == "failed"
    assert report.error == "api-1 (svc-1): resume deploy dep-1-1 update_failed"
    assert report.seconds_to_rejoin is None


def test_a_suspend_never_reported_stops_at_the_targets_deadline_and_resumes() -> None:
    world = render_world()
    world.suspend_report_delay = 10_000.0
    report = render_drill(world)
    assert report.outcome == "failed"
    assert report.error == (
        "the API did not report api-1 (svc-1) suspended within 120s of the suspend (render timing)"
    )
    assert report.resumed is True
    assert api_calls(world)[-1] == "POST /v1/services/srv-1/resume"
    suspended = next(c for c in report.checks if c.name == "api-1 suspended via the API")
    assert suspended.passed is False
