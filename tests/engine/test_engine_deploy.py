"""Orchestration of up / destroy-instance with a fake engine at the protocol seam."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_fakes import ENV, KV, OUTPUTS, PG, WEB, FakeEngine, FakeUI, Recorder, plan_of

from koinonia_infra.deploy import (
    DeployOutcome,
    DestroyRequest,
    check_destroy_request,
    run_destroy_instance,
    run_up,
    unexpected_destroy_steps,
    wait_for_deploys,
)
from koinonia_infra.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    OperationFailed,
    StackLocked,
    UsageError,
)
from koinonia_infra.stackfile import remove_instance

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


class _Deploy:
    def __init__(self, status: str) -> None:
        self.status = status


class FakeClient:
    def __init__(self, statuses: dict[str, str], *, timeout_on: str | None = None) -> None:
        self.statuses = statuses
        self.timeout_on = timeout_on
        self.calls: list[tuple[str, str | None, float]] = []

    def wait_for_deploy(self, service_id: str, deploy_id: str | None, *, timeout: float) -> Any:
        self.calls.append((service_id, deploy_id, timeout))
        if service_id == self.timeout_on:
            raise OperationFailed(f"service {service_id}: deploy dep-1 still build_in_progress")
        return _Deploy(self.statuses[service_id])


def test_wait_for_deploys_follows_every_instance_and_the_edge() -> None:
    from engine_fakes import descriptor_of

    client = FakeClient({"srv-api1": "live", "srv-api2": "update_failed", "srv-edge": "live"})
    outcomes = wait_for_deploys(client, descriptor_of(OUTPUTS), timeout=60)
    assert [(o.service, o.status, o.ok) for o in outcomes] == [
        ("koinonia-sms-backend", "live", True),
        ("koinonia-sms-backend-2", "update_failed", False),
        ("koinonia-edge", "live", True),
    ]
    assert all(deploy_id is None for _, deploy_id, _ in client.calls)
    assert all(0 < timeout <= 60 for _, _, timeout in client.calls)


def test_wait_for_deploys_timeout_names_the_service() -> None:
    from engine_fakes import descriptor_of

    client = FakeClient({"srv-api1": "live"}, timeout_on="srv-api2")
    with pytest.raises(OperationFailed, match=r"^koinonia-sms-backend-2: service srv-api2"):
        wait_for_deploys(client, descriptor_of(OUTPUTS), timeout=60)


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
    from engine_fakes import descriptor_of

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
    from engine_fakes import descriptor_of

    engine, ui, rec = FakeEngine(DESTROY_2), FakeUI(), Recorder(unhealthy=frozenset({1}))
    before = (project / "Pulumi.prod.yaml").read_text()
    with pytest.raises(OperationFailed, match=r"surviving instance 1 .* is unhealthy .*--force"):
        run_destroy_instance(
            engine, rec.seams(ui), _request(project, yes=True), current=descriptor_of(OUTPUTS)
        )
    assert engine.calls == []
    assert (project / "Pulumi.prod.yaml").read_text() == before


def test_destroy_instance_force_proceeds_despite_an_unhealthy_survivor(project: Path) -> None:
    from engine_fakes import descriptor_of

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
    from engine_fakes import descriptor_of

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
    from engine_fakes import descriptor_of

    engine, ui, rec = FakeEngine(DESTROY_2), FakeUI(answer="koinonia-sms-backend"), Recorder()
    before = (project / "Pulumi.prod.yaml").read_text()
    with pytest.raises(OperationFailed, match="the name did not match"):
        run_destroy_instance(
            engine, rec.seams(ui), _request(project), current=descriptor_of(OUTPUTS)
        )
    assert "up" not in engine.calls
    assert (project / "Pulumi.prod.yaml").read_text() == before


def test_destroy_instance_without_terminal_needs_yes(project: Path) -> None:
    from engine_fakes import descriptor_of

    engine, ui, rec = FakeEngine(DESTROY_2), FakeUI(interactive=False), Recorder()
    with pytest.raises(UsageError, match="pass --yes"):
        run_destroy_instance(
            engine, rec.seams(ui), _request(project), current=descriptor_of(OUTPUTS)
        )
    assert "up" not in engine.calls


def test_destroy_instance_restores_the_stack_file_when_the_update_fails(project: Path) -> None:
    from engine_fakes import descriptor_of

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
    from engine_fakes import descriptor_of

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
