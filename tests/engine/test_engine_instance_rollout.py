"""`up` applies the changes that redeploy a running instance (its service's settings, its env)
one instance at a time, health-gated.

pulumi-render deploys a service right after every update of its WebService or EnvVarsForService,
without waiting (provider/pkg/provider/provider.go, OnPostUpdate): left to the engine, one such
change would redeploy every instance at once. The flow is run here against the simulated
deployment of the ops tests (a fake Render API served to the real client, fake traffic and
health), through the same rollout loop as `koinonia-infra rollout`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from engine_fakes import ENV, PG, WEB, FakeEngine, FakeUI, Recorder, plan_of

from koinonia_infra.deploy.instance_rollout import (
    instance_changes,
    provider_deploys,
    roll_instance_changes,
)
from koinonia_infra.deploy.types import ApplyInstance, ChangePlan, InstanceRollout, Seams
from koinonia_infra.deploy.up import run_up
from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import EXIT_FAILED, OperationFailed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))
from ops_fakes import World

ENV_CHANGE = plan_of(
    ("update", ENV, "api-1-env"), ("update", ENV, "api-2-env"), ("same", PG, "postgres")
)


def deploy_calls(world: World) -> list[str]:
    return [
        c
        for c in world.calls
        if c.startswith("apply") or (c.startswith("POST") and c.endswith("/deploys"))
    ]


def provider(
    world: World,
    *,
    broken: frozenset[int] = frozenset(),
    deploys: bool = True,
    per_instance: Mapping[int, int] | None = None,
) -> ApplyInstance:
    """The targeted update of api-N's resources as the real provider performs it: PATCH the
    service and/or PUT its env-vars, each followed by `POST /services/{id}/deploys`
    (OnPostUpdate); `per_instance[n]` such updates for instance n (default 1). An instance in
    `broken` gets settings it cannot boot with: it stops answering /health."""

    def apply(number: int) -> None:
        world.calls.append(f"apply {number}")
        for _ in range((per_instance or {}).get(number, 1) if deploys else 0):
            world.client().trigger_deploy(f"srv-{number}")
        if number in broken:
            world.instances[number].up = False

    return apply


def roll(
    world: World,
    order: Sequence[int],
    apply: ApplyInstance,
    provider_deploys: Mapping[int, int],
    *,
    descriptor: Descriptor | None = None,
) -> InstanceRollout:
    return roll_instance_changes(
        descriptor or world.descriptor(),
        order,
        apply,
        provider_deploys,
        client=world.client(),
        start_traffic=world.start_traffic,
        probe=world.probe,
        sleep=world.sleep,
        clock=world.clock,
        grace=5.0,
    )


# ------------------------------------------------------------------------------------------
# Which changes are held back
# ------------------------------------------------------------------------------------------


def ops_of(plan: ChangePlan) -> dict[int, list[str]]:
    return {n: [f"{s.op} {s.name}" for s in steps] for n, steps in instance_changes(plan).items()}


def test_env_updates_of_running_instances_are_held_back() -> None:
    assert ops_of(ENV_CHANGE) == {1: ["update api-1-env"], 2: ["update api-2-env"]}


def test_service_setting_updates_are_held_back_with_the_instances_env() -> None:
    # A PATCH of the service (plan, commands, ...) redeploys it as an env PUT does.
    plan = plan_of(
        ("update", WEB, "api-1"),
        ("update", ENV, "api-1-env"),
        ("update", WEB, "api-2"),
        ("update", WEB, "edge"),
        ("update", PG, "postgres"),
    )
    assert ops_of(plan) == {1: ["update api-1", "update api-1-env"], 2: ["update api-2"]}
    assert {n: provider_deploys(s) for n, s in instance_changes(plan).items()} == {1: 2, 2: 1}


def test_a_new_or_replaced_service_is_not_rolled_its_first_deploy_has_the_env() -> None:
    plan = plan_of(
        ("create", WEB, "api-3"),
        ("create", ENV, "api-3-env"),
        ("replace", WEB, "api-4"),
        ("update", ENV, "api-4-env"),
        ("update", ENV, "edge-env"),
    )
    assert instance_changes(plan) == {}


def test_an_adopted_service_getting_its_env_resource_is_rolled() -> None:
    # EnvVarsForService's create PUTs without deploying (OnPostCreate): the adopted instance
    # would keep running without the declared env until some later deploy.
    plan = plan_of(("import", WEB, "api-1"), ("create", ENV, "api-1-env"))
    assert ops_of(plan) == {1: ["create api-1-env"]}
    assert provider_deploys(instance_changes(plan)[1]) == 0


# ------------------------------------------------------------------------------------------
# The rollout itself
# ------------------------------------------------------------------------------------------


def test_each_instance_is_updated_then_deployed_and_healthy_before_the_next() -> None:
    world = World()
    outcome = roll(world, [2, 1], provider(world), {1: 1, 2: 1})
    assert outcome.ok, outcome.error
    # One deploy per instance, the provider's: the rollout starts none of its own.
    assert deploy_calls(world) == [
        "apply 2",
        "POST /v1/services/srv-2/deploys",
        "apply 1",
        "POST /v1/services/srv-1/deploys",
    ]
    # Instance 1 is touched only after instance 2's deploy was followed to `live`.
    first_apply_1 = world.calls.index("apply 1")
    live_polls_2 = [
        i for i, c in enumerate(world.calls) if c.startswith("GET /v1/services/srv-2/deploys/")
    ]
    assert live_polls_2
    assert max(live_polls_2) < first_apply_1
    assert [(d.service, d.status) for d in outcome.deploys] == [
        ("svc-2", "live"),
        ("svc-1", "live"),
    ]


def test_the_first_unhealthy_instance_stops_the_rollout_and_is_named() -> None:
    world = World()
    outcome = roll(world, [2, 1], provider(world, broken=frozenset({2})), {1: 1, 2: 1})
    assert not outcome.ok
    assert outcome.exit_code == EXIT_FAILED
    assert outcome.error is not None
    assert "api-2 (svc-2) not healthy" in outcome.error
    assert "api-1 keep(s) the previous settings and environment" in outcome.error
    assert "\n" not in outcome.error
    # Instance 1 never got the change: it keeps serving with the old environment.
    assert "apply 1" not in world.calls
    assert world.instances[1].up


def test_a_create_on_an_existing_service_is_deployed_by_the_rollout() -> None:
    world = World()
    outcome = roll(world, [1], provider(world, deploys=False), {1: 0})
    assert outcome.ok, outcome.error
    assert deploy_calls(world) == ["apply 1", "POST /v1/services/srv-1/deploys"]


def test_a_provider_deploy_that_never_appears_is_triggered_after_the_grace() -> None:
    # The provider only logs a warning when its deploy trigger fails (OnPostUpdate).
    world = World()
    outcome = roll(world, [2], provider(world, deploys=False), {2: 1})
    assert outcome.ok, outcome.error
    assert deploy_calls(world) == ["apply 2", "POST /v1/services/srv-2/deploys"]


def test_one_of_two_expected_deploys_listed_is_followed_after_the_grace() -> None:
    # Should Render list only one deploy for a service and env update, that one decides; the
    # rollout starts none of its own.
    world = World()
    outcome = roll(world, [1], provider(world), {1: 2})
    assert outcome.ok, outcome.error
    assert deploy_calls(world) == ["apply 1", "POST /v1/services/srv-1/deploys"]
    assert [d.deploy_id for d in outcome.deploys] == [world.instances[1].deploys[0]["id"]]


# ------------------------------------------------------------------------------------------
# Through `up`
# ------------------------------------------------------------------------------------------


def seams_on(
    world: World, ui: FakeUI, rec: Recorder, broken: frozenset[int] = frozenset()
) -> Seams:
    seams = rec.seams(ui)

    def descriptor(_outputs: object) -> Descriptor:
        return world.descriptor()

    seams.descriptor_from_outputs = descriptor

    def roller(
        descriptor: Descriptor,
        order: Sequence[int],
        apply: ApplyInstance,
        provider_deploys: Mapping[int, int],
    ) -> InstanceRollout:
        return roll(world, order, apply, provider_deploys, descriptor=descriptor)

    seams.roll_instances = roller
    return seams


def engine_on(
    world: World, plan: ChangePlan = ENV_CHANGE, broken: frozenset[int] = frozenset()
) -> FakeEngine:
    engine = FakeEngine(plan)
    counts = {n: provider_deploys(steps) for n, steps in instance_changes(plan).items()}
    apply = provider(world, broken=broken, per_instance=counts)

    def on_target(names: list[str]) -> None:
        (number,) = {int(name.split("-")[1]) for name in names}  # one instance per update
        apply(number)

    engine.on_target = on_target
    return engine


def test_up_applies_an_env_change_one_instance_at_a_time() -> None:
    world, ui, rec = World(), FakeUI(interactive=False), Recorder()
    engine = engine_on(world)
    report = run_up(engine, seams_on(world, ui, rec), yes=True, skip_verify=True)
    # Only env changes: no main update; then one targeted update per instance, highest first.
    assert engine.ups == [("target", ["api-2-env"]), ("target", ["api-1-env"])]
    assert deploy_calls(world) == [
        "apply 2",
        "POST /v1/services/srv-2/deploys",
        "apply 1",
        "POST /v1/services/srv-1/deploys",
    ]
    assert [d.status for d in report.deploys] == ["live", "live"]
    infos = [text for level, text in ui.messages if level == "info"]
    first = "applying the instances' changes one instance at a time: api-2, api-1"
    assert infos[infos.index(first) :][:3] == [
        first,
        "api-2: applying its changes (api-2-env)",
        "api-1: applying its changes (api-1-env)",
    ]


def test_up_holds_instance_changes_out_of_the_main_update() -> None:
    world, ui, rec = World(), FakeUI(interactive=False), Recorder()
    plan = plan_of(
        ("update", WEB, "api-1"),
        ("update", ENV, "api-1-env"),
        ("update", ENV, "api-2-env"),
        ("update", WEB, "edge"),
    )
    engine = engine_on(world, plan)
    run_up(engine, seams_on(world, ui, rec), yes=True, skip_verify=True)
    (kind, excluded), *targeted = engine.ups
    assert (kind, sorted(excluded)) == ("exclude", ["api-1", "api-1-env", "api-2-env"])
    assert targeted == [("target", ["api-2-env"]), ("target", ["api-1", "api-1-env"])]
    assert len(rec.waited) == 1  # the main update's (the edge's) deploys were awaited first


def test_a_service_and_env_change_is_one_update_whose_newer_deploy_is_followed() -> None:
    # The PATCH's deploy has the new settings with the old env; the PUT's, after it (the env
    # resource depends on the service), has both: that is the one that must go live.
    world, ui, rec = World(), FakeUI(interactive=False), Recorder()
    plan = plan_of(("update", WEB, "api-1"), ("update", ENV, "api-1-env"), ("update", WEB, "api-2"))
    engine = engine_on(world, plan)
    report = run_up(engine, seams_on(world, ui, rec), yes=True, skip_verify=True)
    assert engine.ups == [("target", ["api-2"]), ("target", ["api-1", "api-1-env"])]
    # Two deploys from the provider for api-1, none from the rollout itself.
    assert deploy_calls(world) == [
        "apply 2",
        "POST /v1/services/srv-2/deploys",
        "apply 1",
        "POST /v1/services/srv-1/deploys",
        "POST /v1/services/srv-1/deploys",
    ]
    newest = world.instances[1].deploys[0]["id"]
    assert [d.service for d in report.deploys] == ["svc-2", "svc-1"]
    assert report.deploys[1].deploy_id == newest
    assert all(d.status == "live" for d in report.deploys)


def test_up_stops_at_the_first_unhealthy_instance_exit_1_naming_it() -> None:
    world, ui, rec = World(), FakeUI(interactive=False), Recorder()
    engine = engine_on(world, broken=frozenset({2}))
    with pytest.raises(OperationFailed) as err:
        run_up(engine, seams_on(world, ui, rec), yes=True)
    assert err.value.exit_code == EXIT_FAILED
    assert "api-2 (svc-2) not healthy" in err.value.message
    assert "\n" not in err.value.message
    assert engine.ups == [("target", ["api-2-env"])]
    assert rec.verified == []


def test_cli_up_exits_1_with_one_line_naming_the_unhealthy_instance(
    monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    from typer.testing import CliRunner

    from koinonia_infra.cli import app
    from koinonia_infra.deploy import wiring

    world, rec = World(), Recorder()
    engine = engine_on(world, broken=frozenset({2}))
    monkeypatch.delenv("KOINONIA_DEBUG", raising=False)
    monkeypatch.setattr(wiring, "open_engine", lambda stack, **_: engine)
    monkeypatch.setattr(wiring, "build_seams", lambda stack, ui, **_: seams_on(world, ui, rec))
    result = CliRunner().invoke(app, ["up", "--yes"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "not healthy" in line]
    assert len(errors) == 1
    assert "api-2 (svc-2)" in errors[0]
    assert "api-1 keep(s) the previous settings and environment" in errors[0]
    assert "Traceback" not in result.stderr
