"""Orchestration of up / destroy-instance with a fake engine at the protocol seam."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_fakes import (
    ENV,
    KV,
    OUTPUTS,
    PG,
    WEB,
    FakeEngine,
    FakeUI,
    Recorder,
    descriptor_of,
    plan_of,
)

from koinonia_infra.deploy.deploys import check_deploys, wait_for_deploys
from koinonia_infra.deploy.destroy import (
    DestroyRequest,
    check_destroy_request,
    run_destroy_instance,
    unexpected_destroy_steps,
)
from koinonia_infra.deploy.stackfile import remove_instance
from koinonia_infra.deploy.types import DeployOutcome
from koinonia_infra.deploy.up import run_up
from koinonia_infra.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    OperationFailed,
    StackLocked,
    UsageError,
)
from koinonia_infra.render_api import DEPLOY_TERMINAL

CHANGE = plan_of(
    ("update", ENV, "api-1-env"), ("update", ENV, "api-2-env"), ("same", PG, "postgres")
)


# ------------------------------------------------------------------------------------------
# up
# ------------------------------------------------------------------------------------------


def test_up_with_yes_updates_waits_for_every_deploy_and_verifies() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(interactive=False), Recorder()
    report = run_up(engine, rec.seams(ui), yes=True)
    assert engine.calls == ["preview", "up", "outputs"]
    assert rec.waited == [["srv-api1", "srv-api2", "srv-edge"]]
    assert rec.verified == [[1, 2]]
    assert report.updated
    assert report.verify is not None
    assert report.verify.passed
    assert ui.questions == []


def test_up_waits_for_deploys_created_since_the_update_started_and_shows_each() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(interactive=False), Recorder()
    before = datetime.now(UTC)
    run_up(engine, rec.seams(ui), yes=True)
    after = datetime.now(UTC)
    assert len(rec.since) == 1
    assert before <= rec.since[0] <= after
    assert ("success", "srv-api2: deploy live") in ui.messages


def test_up_without_terminal_and_without_yes_refuses_before_updating() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(interactive=False), Recorder()
    with pytest.raises(UsageError) as err:
        run_up(engine, rec.seams(ui))
    assert err.value.exit_code == EXIT_USAGE
    assert "pass --yes" in err.value.message
    assert "up" not in engine.calls


def test_up_declined_at_the_prompt_changes_nothing() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(interactive=True, confirm=False), Recorder()
    with pytest.raises(OperationFailed, match="nothing was changed"):
        run_up(engine, rec.seams(ui))
    assert ui.questions == ["Do you want to update stack prod?"]
    assert "up" not in engine.calls
    assert rec.waited == []


def test_up_confirmed_at_the_prompt_updates() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(interactive=True, confirm=True), Recorder()
    run_up(engine, rec.seams(ui))
    assert "up" in engine.calls


@pytest.mark.parametrize("op", ["delete", "replace"])
@pytest.mark.parametrize(("rtype", "name"), [(PG, "postgres"), (KV, "key-value")])
def test_up_refuses_to_delete_or_replace_a_datastore(op: str, rtype: str, name: str) -> None:
    engine = FakeEngine(plan_of((op, rtype, name), ("update", WEB, "api-1")))
    ui, rec = FakeUI(), Recorder()
    with pytest.raises(UsageError, match=f"refusing to {op} datastore {name}") as err:
        run_up(engine, rec.seams(ui), yes=True)
    assert "--allow-data-loss" in err.value.message
    assert "up" not in engine.calls


def test_up_allow_data_loss_lets_a_datastore_replacement_through() -> None:
    engine, ui, rec = FakeEngine(plan_of(("replace", PG, "postgres"))), FakeUI(), Recorder()
    run_up(engine, rec.seams(ui), yes=True, allow_data_loss=True)
    assert "up" in engine.calls


def test_up_with_no_changes_skips_the_update_but_still_verifies() -> None:
    engine, ui, rec = (
        FakeEngine(plan_of(("same", WEB, "api-1"))),
        FakeUI(interactive=False),
        Recorder(),
    )
    report = run_up(engine, rec.seams(ui))
    assert "up" not in engine.calls
    assert not report.updated
    assert rec.verified == [[1, 2]]
    assert ("success", "stack prod is up to date: no changes") in ui.messages


@pytest.mark.parametrize(
    "status", ["build_failed", "update_failed", "pre_deploy_failed", "canceled"]
)
def test_up_fails_naming_the_service_and_the_deploy_status(status: str) -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(), Recorder(deploy_status=status)
    with pytest.raises(OperationFailed) as err:
        run_up(engine, rec.seams(ui), yes=True)
    assert err.value.exit_code == EXIT_FAILED
    assert f"deploy of srv-api1 (srv-api1) ended {status}" in str(err.value)
    assert rec.verified == []


def test_up_fails_when_verification_fails() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(), Recorder(verify_passed=False)
    with pytest.raises(OperationFailed, match="verification failed: 1 check"):
        run_up(engine, rec.seams(ui), yes=True)


def test_up_skip_verify_does_not_verify() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(), Recorder()
    run_up(engine, rec.seams(ui), yes=True, skip_verify=True)
    assert rec.verified == []
    assert ("warning", "verification skipped (--skip-verify)") in ui.messages


def test_up_with_a_mandatory_policy_violation_changes_nothing() -> None:
    plan = plan_of(("update", WEB, "api-2"))
    plan.policy_violations.append("koinonia/api-services-identical (mandatory) api-2: differs")
    engine, ui, rec = FakeEngine(plan), FakeUI(), Recorder()
    with pytest.raises(OperationFailed, match="policy violations"):
        run_up(engine, rec.seams(ui), yes=True)
    assert "up" not in engine.calls


def test_a_locked_stack_surfaces_as_exit_4() -> None:
    engine = FakeEngine(CHANGE, up_error=StackLocked("stack prod is locked by another update"))
    with pytest.raises(StackLocked) as err:
        run_up(engine, Recorder().seams(FakeUI()), yes=True)
    assert err.value.exit_code == 4


# ------------------------------------------------------------------------------------------
# deploy waiting against a fake Render client
# ------------------------------------------------------------------------------------------


UPDATE_STARTED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class FakeDeploy:
    id: str
    status: str
    created_at: datetime | None


class Timeline:
    """Render's deploys over a fake clock. Each deploy is listed from `listed_at` (seconds after
    waiting began) and goes through `statuses` [(from second, status), ...]."""

    def __init__(self) -> None:
        self.now = 0.0
        self.deploys: dict[str, list[tuple[float, str, datetime | None, list[tuple[float, str]]]]]
        self.deploys = {}

    def add(
        self,
        service_id: str,
        deploy_id: str,
        *,
        created: datetime | None,
        listed_at: float = 0.0,
        statuses: list[tuple[float, str]],
    ) -> None:
        self.deploys.setdefault(service_id, []).append((listed_at, deploy_id, created, statuses))

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += max(seconds, 0.01)

    def listed(self, service_id: str) -> list[FakeDeploy]:
        """Newest first, as Render lists them."""
        visible = [d for d in self.deploys.get(service_id, []) if d[0] <= self.now]
        return [
            FakeDeploy(deploy_id, [s for t, s in statuses if t <= self.now][-1], created)
            for _, deploy_id, created, statuses in reversed(visible)
        ]


class FakeClient:
    """`DeployClient` over a Timeline; `wait_for_deploy` polls like RenderClient's."""

    def __init__(self, timeline: Timeline) -> None:
        self.t = timeline
        self.followed: list[tuple[str, str | None]] = []
        self.latest_polls: dict[str, int] = {}

    def latest_deploy(self, service_id: str) -> FakeDeploy | None:
        self.latest_polls[service_id] = self.latest_polls.get(service_id, 0) + 1
        listed = self.t.listed(service_id)
        return listed[0] if listed else None

    def wait_for_deploy(
        self, service_id: str, deploy_id: str | None, *, timeout: float
    ) -> FakeDeploy:
        self.followed.append((service_id, deploy_id))
        deadline = self.t.now + timeout
        while True:
            listed = self.t.listed(service_id)
            found = [d for d in listed if deploy_id is None or d.id == deploy_id][:1]
            if found and found[0].status in DEPLOY_TERMINAL:
                return found[0]
            if self.t.now >= deadline:
                seen = found[0].status if found else "no deploy"
                raise OperationFailed(
                    f"service {service_id}: deploy still {seen} after {timeout:g}s"
                )
            self.t.sleep(2.0)


BEFORE = UPDATE_STARTED - timedelta(hours=2)
AFTER = UPDATE_STARTED + timedelta(seconds=40)


def _wait(timeline: Timeline, client: Any = None, **kw: Any) -> list[DeployOutcome]:
    return wait_for_deploys(
        client or FakeClient(timeline),
        descriptor_of(OUTPUTS),
        since=UPDATE_STARTED,
        clock=timeline.clock,
        sleep=timeline.sleep,
        **kw,
    )


def _all_live_before(timeline: Timeline) -> None:
    for sid in ("srv-api1", "srv-api2", "srv-edge"):
        timeline.add(sid, f"dep-old-{sid}", created=BEFORE, statuses=[(0, "live")])


def test_wait_for_deploys_waits_for_a_deploy_render_lists_only_after_a_few_polls() -> None:
    t = Timeline()
    _all_live_before(t)
    # api-2's deploy shows up 7 s into the wait, then builds until second 30 and fails.
    t.add(
        "srv-api2",
        "dep-new",
        created=AFTER,
        listed_at=7,
        statuses=[(0, "build_in_progress"), (30, "update_failed")],
    )
    client = FakeClient(t)
    outcomes = _wait(t, client, timeout=600, grace=20)
    by_service = {o.service_id: o for o in outcomes}
    # Not the previous `live` deploy: the new one, followed by id to its failure.
    assert by_service["srv-api2"] == DeployOutcome(
        "koinonia-sms-backend-2", "srv-api2", "update_failed", "dep-new", new=True
    )
    assert ("srv-api2", "dep-new") in client.followed
    assert client.latest_polls["srv-api1"] > 3, "api-1 was polled through the grace period"
    assert t.now >= 30
    with pytest.raises(OperationFailed, match=r"deploy of koinonia-sms-backend-2 .* update_failed"):
        check_deploys(outcomes)


def test_wait_for_deploys_falls_back_to_the_latest_deploy_of_an_unchanged_service() -> None:
    t = Timeline()
    _all_live_before(t)
    t.add("srv-api1", "dep-new1", created=AFTER, statuses=[(0, "queued"), (12, "live")])
    client = FakeClient(t)
    outcomes = _wait(t, client, timeout=600, grace=20)
    assert [(o.service_id, o.deploy_id, o.status, o.new) for o in outcomes] == [
        ("srv-api1", "dep-new1", "live", True),
        ("srv-api2", "dep-old-srv-api2", "live", False),
        ("srv-edge", "dep-old-srv-edge", "live", False),
    ]
    assert ("srv-api2", None) in client.followed
    # The grace period is shared: unchanged services do not each add their own.
    assert t.now < 20 + 5
    assert outcomes[1].describe() == (
        "koinonia-sms-backend-2: no new deploy since the update (unchanged?); "
        "latest deploy dep-old-srv-api2 live"
    )
    assert outcomes[0].describe() == "koinonia-sms-backend: deploy dep-new1 live"


def test_wait_for_deploys_tolerates_a_little_clock_skew() -> None:
    t = Timeline()
    _all_live_before(t)
    skewed = UPDATE_STARTED - timedelta(seconds=10)  # Render's clock runs behind ours
    t.add("srv-edge", "dep-edge", created=skewed, statuses=[(0, "update_in_progress"), (5, "live")])
    outcomes = _wait(t, timeout=600, grace=20)
    assert (outcomes[2].deploy_id, outcomes[2].new) == ("dep-edge", True)


def test_wait_for_deploys_follows_a_later_deploy_that_superseded_the_first() -> None:
    t = Timeline()
    _all_live_before(t)
    t.add("srv-api1", "dep-a", created=AFTER, statuses=[(0, "build_in_progress"), (6, "canceled")])
    later = AFTER + timedelta(seconds=5)
    t.add("srv-api1", "dep-b", created=later, listed_at=5, statuses=[(0, "queued"), (15, "live")])
    outcomes = _wait(t, timeout=600, grace=3)
    assert (outcomes[0].deploy_id, outcomes[0].status) == ("dep-b", "live")


def test_wait_for_deploys_timeout_names_the_service() -> None:
    t = Timeline()
    _all_live_before(t)
    t.add("srv-api2", "dep-slow", created=AFTER, statuses=[(0, "build_in_progress")])
    with pytest.raises(OperationFailed, match=r"^koinonia-sms-backend-2: service srv-api2") as err:
        _wait(t, timeout=60, grace=5)
    assert "build_in_progress" in str(err.value)


def test_wait_for_deploys_with_the_real_render_client() -> None:
    """Same timeline through RenderClient and Render's JSON (createdAt strings, cursors)."""
    import httpx

    from koinonia_infra.render_api import RenderClient

    t = Timeline()
    _all_live_before(t)
    t.add("srv-api1", "dep-new", created=AFTER, listed_at=4, statuses=[(0, "queued"), (9, "live")])

    def as_json(d: FakeDeploy) -> dict[str, Any]:
        created = d.created_at.isoformat().replace("+00:00", "Z") if d.created_at else None
        return {"id": d.id, "status": d.status, "createdAt": created}

    def handler(request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")  # v1/services/<id>/deploys[/<deploy>]
        listed = t.listed(parts[2])
        if len(parts) == 5:
            return httpx.Response(200, json=as_json(next(d for d in listed if d.id == parts[4])))
        limit = int(request.url.params.get("limit", "20"))
        return httpx.Response(
            200, json=[{"cursor": d.id, "deploy": as_json(d)} for d in listed[:limit]]
        )

    with RenderClient(
        "https://render.test/v1",
        "k",
        transport=httpx.MockTransport(handler),
        sleep=t.sleep,
        clock=t.clock,
    ) as client:
        outcomes = _wait(t, client, timeout=600, grace=20)
    assert [(o.deploy_id, o.status, o.new) for o in outcomes] == [
        ("dep-new", "live", True),
        ("dep-old-srv-api2", "live", False),
        ("dep-old-srv-edge", "live", False),
    ]


def test_deploy_outcome_only_live_is_ok() -> None:
    assert DeployOutcome("a", "srv", "live").ok
    assert not DeployOutcome("a", "srv", "deactivated").ok


# ------------------------------------------------------------------------------------------
# destroy-instance
# ------------------------------------------------------------------------------------------

DESTROY_2 = plan_of(
    ("delete", WEB, "api-2"),
    ("delete", ENV, "api-2-env"),
    ("update", ENV, "edge-env"),
    ("same", WEB, "api-1"),
    ("same", PG, "postgres"),
)


def _request(project: Path, number: int = 2, **kw: Any) -> DestroyRequest:
    path = project / "Pulumi.prod.yaml"
    return DestroyRequest(
        number=number,
        service_name=f"koinonia-sms-backend-{number}" if number > 1 else "koinonia-sms-backend",
        stack_file=path,
        new_stack_text=remove_instance(path.read_text(encoding="utf-8"), number),
        **kw,
    )


def test_destroy_request_must_name_a_declared_instance() -> None:
    with pytest.raises(UsageError, match=r"instance 3 is not declared in api.instances \(1, 2\)"):
        check_destroy_request(3, [1, 2])


def test_destroy_request_refuses_the_last_instance() -> None:
    with pytest.raises(UsageError, match="it is the last instance"):
        check_destroy_request(2, [2])


def test_destroy_instance_happy_path_edits_the_file_and_says_to_commit(project: Path) -> None:
    after = {**OUTPUTS, "instances": OUTPUTS["instances"][:1]}
    engine = FakeEngine(DESTROY_2, outputs_after_up=after)
    ui, rec = FakeUI(answer="koinonia-sms-backend-2"), Recorder()
    original = (project / "Pulumi.prod.yaml").read_text()
    run_destroy_instance(engine, rec.seams(ui), _request(project), current=descriptor_of(OUTPUTS))

    assert engine.calls == ["preview", "up"]
    # The preview ran against the edited config, before the real file changed.
    assert engine.preview_config_text is not None
    assert "instances: [1]" in engine.preview_config_text
    edited = (project / "Pulumi.prod.yaml").read_text()
    assert "instances: [1]" in edited
    # Only that line changed: comments and layout survive.
    changed = [
        (a, b) for a, b in zip(original.splitlines(), edited.splitlines(), strict=True) if a != b
    ]
    assert changed == [("    instances: [1, 2]", "    instances: [1]")]
    assert rec.health_checked == [1]
    assert rec.verified == [[1]]
    assert ui.questions == ["Type the service name (koinonia-sms-backend-2) to remove instance 2"]
    assert "commit Pulumi.prod.yaml now" in ui.text()
    assert not list(project.glob(".Pulumi.prod.yaml.destroy-*"))


def test_destroy_instance_refuses_when_a_survivor_is_unhealthy(project: Path) -> None:
    engine, ui, rec = FakeEngine(DESTROY_2), FakeUI(), Recorder(unhealthy=frozenset({1}))
    before = (project / "Pulumi.prod.yaml").read_text()
    with pytest.raises(OperationFailed, match=r"surviving instance 1 .* is unhealthy .*--force"):
        run_destroy_instance(
            engine, rec.seams(ui), _request(project, yes=True), current=descriptor_of(OUTPUTS)
        )
    assert engine.calls == []
    assert (project / "Pulumi.prod.yaml").read_text() == before


def test_destroy_instance_force_proceeds_despite_an_unhealthy_survivor(project: Path) -> None:
    engine, ui, rec = FakeEngine(DESTROY_2), FakeUI(), Recorder(unhealthy=frozenset({1}))
    run_destroy_instance(
        engine,
        rec.seams(ui),
        _request(project, yes=True, force=True),
        current=descriptor_of(OUTPUTS),
    )
    assert "up" in engine.calls
    assert ("warning", "continuing despite unhealthy survivors (--force)") in ui.messages


def test_destroy_instance_refuses_a_preview_that_touches_anything_else(project: Path) -> None:
    plan = plan_of(("delete", WEB, "api-2"), ("delete", ENV, "api-2-env"), ("update", WEB, "api-1"))
    engine, ui, rec = FakeEngine(plan), FakeUI(), Recorder()
    before = (project / "Pulumi.prod.yaml").read_text()
    with pytest.raises(OperationFailed) as err:
        run_destroy_instance(
            engine, rec.seams(ui), _request(project, yes=True), current=descriptor_of(OUTPUTS)
        )
    assert "update render:services:WebService api-1" in err.value.lines
    assert "up" not in engine.calls
    assert (project / "Pulumi.prod.yaml").read_text() == before


def test_destroy_instance_wrong_typed_name_cancels(project: Path) -> None:
    engine, ui, rec = FakeEngine(DESTROY_2), FakeUI(answer="koinonia-sms-backend"), Recorder()
    before = (project / "Pulumi.prod.yaml").read_text()
    with pytest.raises(OperationFailed, match="the name did not match"):
        run_destroy_instance(
            engine, rec.seams(ui), _request(project), current=descriptor_of(OUTPUTS)
        )
    assert "up" not in engine.calls
    assert (project / "Pulumi.prod.yaml").read_text() == before


def test_destroy_instance_without_terminal_needs_yes(project: Path) -> None:
    engine, ui, rec = FakeEngine(DESTROY_2), FakeUI(interactive=False), Recorder()
    with pytest.raises(UsageError, match="pass --yes"):
        run_destroy_instance(
            engine, rec.seams(ui), _request(project), current=descriptor_of(OUTPUTS)
        )
    assert "up" not in engine.calls


def test_destroy_instance_restores_the_stack_file_when_the_update_fails(project: Path) -> None:
    engine = FakeEngine(DESTROY_2, up_error=OperationFailed("pulumi up failed for stack prod"))
    ui, rec = FakeUI(), Recorder()
    before = (project / "Pulumi.prod.yaml").read_bytes()
    with pytest.raises(OperationFailed) as err:
        run_destroy_instance(
            engine, rec.seams(ui), _request(project, yes=True), current=descriptor_of(OUTPUTS)
        )
    assert (project / "Pulumi.prod.yaml").read_bytes() == before
    assert "Pulumi.prod.yaml restored to its previous content" in err.value.lines
    assert rec.verified == []


def test_destroy_instance_restores_the_stack_file_on_interrupt(project: Path) -> None:
    engine = FakeEngine(DESTROY_2, up_error=KeyboardInterrupt())
    ui, rec = FakeUI(), Recorder()
    before = (project / "Pulumi.prod.yaml").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        run_destroy_instance(
            engine, rec.seams(ui), _request(project, yes=True), current=descriptor_of(OUTPUTS)
        )
    assert (project / "Pulumi.prod.yaml").read_bytes() == before
    assert ("warning", "Pulumi.prod.yaml restored to its previous content") in ui.messages


def test_unexpected_destroy_steps_requires_the_service_deletion() -> None:
    unexpected, deletes = unexpected_destroy_steps(plan_of(("update", ENV, "edge-env")), 2)
    assert unexpected == []
    assert not deletes
    unexpected, deletes = unexpected_destroy_steps(DESTROY_2, 2)
    assert unexpected == []
    assert deletes
