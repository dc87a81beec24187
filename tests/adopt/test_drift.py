"""`preview --refresh`: the engine refreshes first; pulumi-render's known refresh noise (the
serviceDetails fields Render returns and the program never declares) is not counted, a real
drift is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pulumi.automation.events import EngineEvent

from koinonia_infra.adopt.drift import REFRESH_NOISE, filter_refresh_noise
from koinonia_infra.deploy.engine import StepCollector
from koinonia_infra.deploy.types import ChangePlan, Step
from koinonia_infra.deploy.up import run_preview

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "engine"))
from engine_fakes import FakeUI  # type: ignore[import-not-found, unused-ignore]

WEB = "render:services:WebService"
PG = "render:postgres:Postgres"
DECLARED = {"plan": "starter", "region": "oregon", "runtime": "image"}
# What a refresh puts into the state's inputs: the GET answer's serviceDetails, filtered.
REFRESHED = {**DECLARED, "numInstances": 1, "env": "image", "previews": {"generation": "off"}}


def _urn(name: str, type_: str = WEB) -> str:
    return f"urn:pulumi:prod::koinonia::{type_}::{name}"


def _event(name: str, old: dict[str, Any], new: dict[str, Any], seq: int = 1) -> EngineEvent:
    def state(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"type": WEB, "urn": _urn(name), "inputs": inputs, "outputs": {}}

    metadata = {
        "op": "update",
        "urn": _urn(name),
        "type": WEB,
        "provider": "urn:pulumi:prod::koinonia::pulumi:providers:render::default::id",
        "diffs": ["serviceDetails"],
        "old": state({"serviceDetails": old}),
        "new": state({"serviceDetails": new}),
    }
    body = {"metadata": metadata, "planning": True}
    return EngineEvent.from_json({"sequence": seq, "timestamp": 1, "resourcePreEvent": body})


def _collected() -> ChangePlan:
    collector = StepCollector("prod")
    collector(_event("edge", REFRESHED, DECLARED))
    collector(_event("api-2", REFRESHED, {**DECLARED, "plan": "standard"}, seq=2))
    return collector.plan({"update": 2, "same": 3})


def test_the_collector_records_which_input_paths_change() -> None:
    steps = {s.name: s for s in _collected().steps}
    assert steps["edge"].paths == (
        "serviceDetails.env",
        "serviceDetails.numInstances",
        "serviceDetails.previews",
    )
    assert "serviceDetails.plan" in steps["api-2"].paths


def test_refresh_noise_is_not_counted_a_real_drift_is() -> None:
    filtered = filter_refresh_noise(_collected())
    assert filtered.noise == ["edge"]
    assert filtered.plan.summary == {"update": 1, "same": 4}
    assert [s.name for s in filtered.plan.changes] == ["api-2"]


def test_noise_is_the_read_back_fields_only() -> None:
    assert "serviceDetails.numInstances" in REFRESH_NOISE
    assert "serviceDetails.envSpecificDetails.preDeployCommand" in REFRESH_NOISE
    for real in ("serviceDetails.plan", "serviceDetails.region", "serviceDetails.runtime"):
        assert real not in REFRESH_NOISE
    # A datastore update is never taken for noise.
    plan = ChangePlan(
        "prod",
        [Step("update", _urn("postgres", PG), PG, paths=("serviceDetails.env",))],
        {"update": 1},
    )
    assert filter_refresh_noise(plan).noise == []


class _RefreshingEngine:
    def __init__(self, plan: ChangePlan) -> None:
        self.plan = plan
        self.refreshed: list[bool] = []

    @property
    def stack_name(self) -> str:
        return "prod"

    def preview(
        self, *, on_event: Any = None, diff: bool = False, config_file: Any = None,
        refresh: bool = False,
    ) -> ChangePlan:  # fmt: skip
        self.refreshed.append(refresh)
        return self.plan


def test_preview_refresh_asks_the_engine_to_refresh_and_filters() -> None:
    engine, ui = _RefreshingEngine(_collected()), FakeUI()
    plan = run_preview(engine, ui, refresh=True)  # type: ignore[arg-type]
    assert engine.refreshed == [True]
    assert plan.summary["update"] == 1
    assert any(
        "not counted: the provider's known refresh noise on edge" in t for _, t in ui.messages
    )


def test_preview_without_refresh_counts_everything() -> None:
    engine, ui = _RefreshingEngine(_collected()), FakeUI()
    plan = run_preview(engine, ui)  # type: ignore[arg-type]
    assert engine.refreshed == [False]
    assert plan.summary["update"] == 2
