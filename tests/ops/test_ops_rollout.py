"""The rolling redeploy and `status` against a simulated deployment."""

from __future__ import annotations

import httpx
import pytest
from ops_fakes import World

from koinonia_infra.errors import OperationFailed, RenderApiError, UsageError
from koinonia_infra.ops.render import rollout_markdown
from koinonia_infra.ops.rollout import RolloutReport, parse_order, run_rollout
from koinonia_infra.ops.status import collect_status
from koinonia_infra.ops.timing import render_timing
from koinonia_infra.settings import settings_from_config


def rollout(world: World, order: list[int], **kwargs: object) -> RolloutReport:
    return run_rollout(
        world.descriptor(),
        world.client(),
        order=order,
        start_traffic=world.start_traffic,
        probe=world.probe,
        sleep=world.sleep,
        settle=0.5,
        **kwargs,  # type: ignore[arg-type]
    )


def deploy_posts(world: World) -> list[str]:
    return [c for c in world.calls if c.startswith("POST") and c.endswith("/deploys")]


def test_rollout_redeploys_in_order_and_every_instance_ends_on_a_new_deploy() -> None:
    world = World()
    report = rollout(world, [2, 1])
    data = report.to_json()
    assert report.outcome == "passed", report.error
    assert report.exit_code == 0
    assert data["failedRequests"] == 0
    assert {"totalRequests", "achievedRate", "maxLatencyMs"} <= data.keys()
    assert deploy_posts(world) == [
        "POST /v1/services/srv-2/deploys",
        "POST /v1/services/srv-1/deploys",
    ]
    assert [(s["instance"], s["outcome"], s["deployStatus"]) for s in data["steps"]] == [
        (2, "done", "live"),
        (1, "done", "live"),
    ]
    for step in report.steps:
        assert step.deploy is not None
        assert step.deploy != step.previous_deploy
        assert step.seconds_to_rejoin is not None


def test_failed_deploy_stops_and_leaves_the_rest_untouched() -> None:
    world = World()
    world.fail_deploy_of.add(2)
    report = rollout(world, [2, 1])
    assert report.outcome == "failed"
    assert report.exit_code == 1
    assert report.error is not None
    assert "api-2 (svc-2)" in report.error
    assert "update_failed" in report.error
    assert deploy_posts(world) == ["POST /v1/services/srv-2/deploys"]
    assert [(s.instance, s.outcome) for s in report.steps] == [(2, "failed"), (1, "untouched")]
    assert report.failed_requests == 0  # instance 1 kept serving
    text = rollout_markdown(report)
    assert "| api-1 | svc-1 | untouched |" in text
    assert "- [ ] every instance on a new deploy: 0 of 2" in text


def test_rollout_refuses_when_an_instance_is_unhealthy() -> None:
    world = World()
    world.instances[1].up = False
    with pytest.raises(OperationFailed, match="refusing the rollout: 1 of 2 instances"):
        rollout(world, [2, 1])
    assert deploy_posts(world) == []


def test_interrupted_rollout_reports_where_it_stopped() -> None:
    world = World()
    world.interrupt_at = world.t + 0.7  # after the 0.5 s settle: while api-2's deploy runs
    report = rollout(world, [2, 1])
    assert report.outcome == "interrupted"
    assert report.exit_code == 130
    assert [(s.instance, s.outcome) for s in report.steps] == [(2, "interrupted"), (1, "untouched")]
    assert deploy_posts(world) == ["POST /v1/services/srv-2/deploys"]
    assert world.calls[-1] == "traffic stop"


def test_deploy_that_never_finishes_names_the_instance() -> None:
    world = World()
    world.deploy_steps = ["build_in_progress"]  # never leaves it
    report = rollout(world, [2, 1], deploy_timeout=5.0)
    assert report.outcome == "failed"
    assert report.exit_code == 1
    assert report.error is not None
    assert report.error.startswith("rollout stopped: api-2 (svc-2): ")
    assert "still build_in_progress after 5s" in report.error
    assert [(s.instance, s.outcome) for s in report.steps] == [(2, "failed"), (1, "untouched")]


def test_parse_order() -> None:
    desc = World(instances=3).descriptor()
    assert parse_order(None, desc) == [3, 2, 1]
    assert parse_order("1, 3", desc) == [1, 3]
    with pytest.raises(UsageError, match="expected instance numbers"):
        parse_order("one", desc)
    with pytest.raises(UsageError, match="each instance once"):
        parse_order("1,1", desc)
    with pytest.raises(UsageError, match="instance 7 is not in the deployment"):
        parse_order("7", desc)


def test_status_lists_instances_and_edge() -> None:
    world = World()
    world.instances[2].suspended = True
    world.instances[2].up = False
    report = collect_status(world.descriptor(), world.client(), world.probe)
    rows = {s.role: s for s in report.services}
    assert list(rows) == ["api-1", "api-2", "edge"]
    assert rows["api-1"].deploy_status == "live"
    assert rows["api-1"].healthy is True
    assert rows["api-2"].suspended is True
    assert rows["api-2"].healthy is False
    # The fake API knows no edge service: the error is shown on its row, the others still load.
    assert rows["edge"].api_error is not None
    assert "srv-edge not found" in rows["edge"].api_error
    assert rows["edge"].healthy is True
    data = report.to_json()
    assert data["services"][0]["deployStatus"] == "live"


def test_status_with_a_rejected_key_fails_once() -> None:
    world = World()
    world.api_failure = lambda _r: httpx.Response(401, json={"message": "unauthorized"})
    with pytest.raises(RenderApiError, match="key was rejected"):
        collect_status(world.descriptor(), world.client(), world.probe)
    assert len([c for c in world.calls if c.startswith("GET")]) == 1


def test_status_without_api_key_shows_health_only() -> None:
    world = World()
    report = collect_status(world.descriptor(), None, world.probe)
    assert [s.deploy_status for s in report.services] == [None, None, None]
    assert all(s.healthy for s in report.services)
    assert not [c for c in world.calls if c.startswith("GET")]


# ---- Render's zero-downtime switch, at Render's own timings (fake clock) ---------------------


def test_rollout_holds_each_instance_through_renders_overlap_and_shutdown_delay() -> None:
    world = World(rate=20.0)
    # No sandbox in the descriptor: Render's timings, 60 s overlap + 30 s maxShutdownDelaySeconds.
    report = rollout(world, [2, 1], rate=20.0)
    assert report.outcome == "passed", report.error
    assert report.timing["target"] == "render"
    assert report.timing["handoverSeconds"] == 90.0
    for step in report.steps:
        assert step.seconds_handover is not None
        assert 90.0 <= step.seconds_handover <= 95.0
    # api-1 was touched only once api-2's old instance was past its window.
    assert report.duration_seconds >= 180.0
    assert "| to rejoin | handover |" in rollout_markdown(report)
    assert report.failed_requests == 0


def test_the_stack_settings_set_renders_deadlines() -> None:
    settings = settings_from_config(
        {
            "ownerId": "tea-abc",
            "api": {"maxShutdownDelaySeconds": 5},
            "ops": {"overlapSeconds": 10, "deployTimeoutSeconds": 3},
        }
    )
    world = World(rate=20.0)
    report = rollout(world, [2], rate=20.0, timing=render_timing(settings))
    assert report.outcome == "passed", report.error
    assert report.steps[0].seconds_handover is not None
    assert 15.0 <= report.steps[0].seconds_handover <= 20.0
    # The deploy deadline too: a deploy that never finishes stops at the stack's 3 s.
    stuck = World(rate=20.0)
    stuck.deploy_steps = ["build_in_progress"]
    failed = rollout(stuck, [2], rate=20.0, timing=render_timing(settings))
    assert failed.error is not None
    assert "still build_in_progress after 3s" in failed.error


def test_a_queued_deploy_without_a_body_is_waited_for_not_mistaken_for_the_previous() -> None:
    world = World(rate=20.0)
    world.deploy_queued_for = 12.0  # 202 "Queued": listed 12 s later
    report = rollout(world, [2], rate=20.0)  # Render: a queued deploy has 60 s to show
    assert report.outcome == "passed", report.error
    step = report.steps[0]
    assert step.previous_deploy == "dep-2-0"
    assert step.deploy == "dep-2-1"


def test_a_queued_deploy_never_listed_stops_the_rollout() -> None:
    world = World(rate=20.0)
    world.deploy_queued_for = 10_000.0
    report = rollout(world, [2, 1], rate=20.0)
    assert report.outcome == "failed"
    assert report.error == (
        "rollout stopped: no new deploy of api-2 (svc-2) was listed within 60s of the trigger"
    )
    assert [(s.instance, s.outcome) for s in report.steps] == [(2, "failed"), (1, "untouched")]
