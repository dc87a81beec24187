"""`up` refuses to replace or delete a live API instance unless told to; `preview` and the PR
comment call out in red every step that replaces, deletes or redeploys an adopted resource."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest
from rich.console import Console

from koinonia_infra.deploy.display import render_plan
from koinonia_infra.deploy.types import ChangePlan, Step
from koinonia_infra.deploy.up import adopted_names, refuse_instance_loss, run_up
from koinonia_infra.errors import UsageError
from koinonia_infra.settings import settings_from_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "engine"))
from engine_fakes import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    ENV,
    KV,
    PG,
    WEB,
    FakeEngine,
    FakeUI,
    Recorder,
)


def plan_of(*steps: tuple[str, str, str]) -> ChangePlan:
    built = [Step(op, f"urn:pulumi:prod::koinonia::{t}::{n}", t) for op, t, n in steps]
    summary: dict[str, int] = {}
    for step in built:
        summary[step.op] = summary.get(step.op, 0) + 1
    return ChangePlan(stack="prod", steps=built, summary=summary)


ADOPTED = frozenset({"api-1", "api-1-env", "postgres", "key-value"})


@pytest.mark.parametrize("op", ["replace", "delete"])
@pytest.mark.parametrize("name", ["api-1", "api-2"])
def test_up_refuses_to_replace_or_delete_a_live_api_instance(op: str, name: str) -> None:
    engine = FakeEngine(plan_of((op, WEB, name), ("update", ENV, "edge-env")))
    ui, rec = FakeUI(), Recorder()
    with pytest.raises(UsageError, match=f"refusing to {op} live API instance {name}") as err:
        run_up(engine, rec.seams(ui), yes=True)
    assert "--allow-instance-replacement" in err.value.message
    assert err.value.exit_code == 2
    assert "up" not in engine.calls


def test_the_flag_lets_an_instance_replacement_through() -> None:
    engine, ui, rec = FakeEngine(plan_of(("replace", WEB, "api-1"))), FakeUI(), Recorder()
    run_up(engine, rec.seams(ui), yes=True, allow_instance_replacement=True)
    assert "up" in engine.calls


def test_the_edge_and_creations_are_not_refused() -> None:
    plan = plan_of(("replace", WEB, "edge"), ("create", WEB, "api-3"), ("update", WEB, "api-1"))
    refuse_instance_loss(plan, allow=False)  # nothing raised


def test_adopted_names_come_from_the_import_ids() -> None:
    settings = settings_from_config(
        {
            "ownerId": "tea-x1",
            "api": {"instances": [1, 2], "importIds": {1: "srv-a"}},
            "postgres": {"importId": "dpg-a-a"},
        }
    )
    assert adopted_names(settings) == frozenset({"api-1", "api-1-env", "postgres"})
    assert adopted_names(None) == frozenset()


def _rendered(plan: ChangePlan) -> list[str]:
    buffer = io.StringIO()
    render_plan(Console(file=buffer, width=200, color_system=None), plan)
    return [line.rstrip() for line in buffer.getvalue().splitlines()]


def _adopted(*steps: tuple[str, str, str]) -> ChangePlan:
    plan = plan_of(*steps)
    plan.adopted = ADOPTED
    return plan


def test_preview_calls_out_a_redeploy_of_an_adopted_service() -> None:
    lines = _rendered(
        _adopted(("update", WEB, "api-1"), ("update", WEB, "api-2"), ("create", WEB, "edge"))
    )
    assert "     !! adopted production resource api-1 would be redeployed" in lines
    assert not any("api-2 would be" in line for line in lines)


def test_preview_calls_out_an_env_update_and_a_datastore_replacement() -> None:
    lines = _rendered(_adopted(("update", ENV, "api-1-env"), ("replace", PG, "postgres")))
    assert "     !! adopted production resource api-1-env would be redeployed" in lines
    assert "     !! adopted production resource postgres would be replaced" in lines


def test_a_plan_update_of_an_adopted_datastore_is_not_a_redeploy() -> None:
    plan = _adopted(("update", KV, "key-value"))
    assert plan.adopted_at_risk == []


def test_preview_json_marks_adopted_steps() -> None:
    plan = _adopted(("update", WEB, "api-1"), ("create", WEB, "api-2"))
    steps = plan.to_json()["steps"]
    assert steps[0]["adopted"] is True
    assert "adopted" not in steps[1]


def _pr_comment() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pr_comment", ROOT / "scripts" / "pr_comment.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_pr_comment_calls_out_adopted_resources_in_red() -> None:
    pr_comment = _pr_comment()
    plan = _adopted(("update", WEB, "api-1"), ("update", WEB, "api-2"), ("delete", KV, "key-value"))
    preview = pr_comment.parse_preview(plan.to_json())
    text = pr_comment.render_comment(stack="prod", preview=preview, pr_cost=None, base_cost=None)
    block = text[text.index("> [!CAUTION]\n> **Adopted production resources**") :]
    # GitHub renders a CAUTION alert in red.
    callout = block[: block.index("\n\n")]
    assert "`api-1`" in callout
    assert "`key-value`" in callout
    assert "`api-2`" not in callout


def test_pr_comment_without_adopted_marks_has_no_such_callout() -> None:
    pr_comment = _pr_comment()
    plan = plan_of(("update", WEB, "api-1"))
    preview = pr_comment.parse_preview(plan.to_json())
    text = pr_comment.render_comment(stack="prod", preview=preview, pr_cost=None, base_cost=None)
    assert "Adopted production resources" not in text


def test_step_type_is_kept() -> None:
    assert Step("update", "urn:pulumi:prod::koinonia::x::api-1", WEB).is_api_service
