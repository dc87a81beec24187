"""The live display, fed real EngineEvent objects built from event-log JSON."""

from __future__ import annotations

import io
import threading

import pytest
from engine_fakes import (
    ENV,
    KV,
    PG,
    SENTINEL,
    WEB,
    diagnostic_event,
    plan_of,
    step_event,
    summary_event,
)
from pulumi.automation.events import EngineEvent
from rich.console import Console

from koinonia_infra.deploy.display import EngineDisplay, render_plan
from koinonia_infra.deploy.engine import StepCollector


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, color_system=None, force_terminal=False), buffer


def _run(operation: str, events: list[EngineEvent], *, live: bool = False) -> list[str]:
    console, buffer = _console()
    with EngineDisplay(console, operation, live=live) as display:  # type: ignore[arg-type]
        for event in events:
            display(event)
    return [line.rstrip() for line in buffer.getvalue().splitlines() if line.strip()]


def test_preview_lists_each_planned_operation_and_the_summary() -> None:
    lines = _run(
        "preview",
        [
            step_event(
                "resourcePreEvent", "same", "pulumi:pulumi:Stack", "koinonia-prod", planning=True
            ),
            step_event("resourcePreEvent", "create", WEB, "api-3", planning=True),
            step_event(
                "resourcePreEvent", "update", ENV, "edge-env", diffs=["envVars"], planning=True
            ),
            step_event("resourcePreEvent", "same", PG, "postgres", planning=True),
            summary_event({"create": 1, "update": 1, "same": 2}),
        ],
    )
    assert lines == [
        "  +  create           render:services:WebService  api-3",
        "  ~  update           render:services:EnvVarsForService  edge-env",
        "Resources: 1 to create, 1 to update, 2 unchanged",
    ]


def test_update_shows_running_then_done_and_failures() -> None:
    lines = _run(
        "update",
        [
            step_event("resourcePreEvent", "create", WEB, "api-3"),
            step_event("resOutputsEvent", "create", WEB, "api-3"),
            step_event("resourcePreEvent", "update", ENV, "api-3-env"),
            step_event("resOpFailedEvent", "update", ENV, "api-3-env"),
            diagnostic_event("400 Bad Request: invalid env var", name="api-3-env"),
            summary_event({"create": 1}),
        ],
    )
    assert lines == [
        "  +  create…          render:services:WebService  api-3",
        "  +  created          render:services:WebService  api-3",
        "  ~  update…          render:services:EnvVarsForService  api-3-env",
        "  ~  update failed    render:services:EnvVarsForService  api-3-env",
        "error: api-3-env: 400 Bad Request: invalid env var",
        "Resources: 1 created",
    ]


def test_replacing_a_datastore_is_called_out_with_the_reason() -> None:
    # The engine announces a replacement as create-replacement, replace, delete-replaced.
    events = [
        step_event("resourcePreEvent", op, PG, "postgres", keys=["version"], planning=True)
        for op in ("create-replacement", "replace", "delete-replaced")
    ]
    lines = _run("preview", events)
    assert lines[0].startswith("  +- replace          render:postgres:Postgres  postgres")
    assert lines[1] == (
        "!! datastore postgres: its data would be lost; replacement forced by changes to version"
    )
    assert len(lines) == 2  # the three engine steps are one replacement


def test_replacing_an_adopted_service_is_a_replacement_too() -> None:
    # An imported resource is replaced through import-replacement / discard-replaced steps.
    events = [
        step_event("resourcePreEvent", op, WEB, "api-1", keys=["ownerId"], planning=True)
        for op in ("import-replacement", "replace", "discard-replaced")
    ]
    lines = _run("preview", events)
    assert lines[0].startswith("  +- replace          render:services:WebService  api-1")
    assert lines[1].startswith("!! API service api-1: it would get a new id and URL")
    assert len(lines) == 2


def test_deleting_an_api_service_is_called_out() -> None:
    lines = _run("preview", [step_event("resourcePreEvent", "delete", WEB, "api-2", planning=True)])
    assert lines == [
        "  -  delete           render:services:WebService  api-2",
        "!! API service api-2: it would get a new id and URL (downtime); no longer declared",
    ]


def test_replacing_the_edge_is_loud_but_not_critical() -> None:
    lines = _run(
        "preview",
        [step_event("resourcePreEvent", "replace", WEB, "edge", keys=["image"], planning=True)],
    )
    assert lines == [
        "  +- replace          render:services:WebService  edge  "
        "(replacement forced by changes to image)"
    ]


def test_engine_text_is_escaped_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_API_KEY", SENTINEL)
    lines = _run(
        "update",
        [
            diagnostic_event(f"[bold]provider said[/bold] key={SENTINEL}", severity="warning"),
            diagnostic_event("debugging noise", severity="debug"),
        ],
    )
    assert lines == ["warning: [bold]provider said[/bold] key=[secret]"]


def test_events_from_many_threads_are_all_recorded_without_garbling() -> None:
    console, buffer = _console()
    display = EngineDisplay(console, "preview", live=False)
    names = [f"api-{n}" for n in range(1, 41)]

    def send(name: str) -> None:
        display(step_event("resourcePreEvent", "create", WEB, name, planning=True))

    threads = [threading.Thread(target=send, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = buffer.getvalue().splitlines()
    assert sorted(line.split()[-1] for line in lines) == sorted(names)
    assert all(line.startswith("  +  create") for line in lines)


def test_live_mode_renders_a_table_with_state() -> None:
    console, buffer = _console()
    with EngineDisplay(console, "update", live=True) as display:
        display(step_event("resourcePreEvent", "update", ENV, "edge-env"))
        display(step_event("resOutputsEvent", "update", ENV, "edge-env"))
    text = buffer.getvalue()
    assert "edge-env" in text
    assert "done" in text


def test_collector_builds_the_plan_json_from_events() -> None:
    collector = StepCollector("prod")
    for event in [
        step_event(
            "resourcePreEvent", "same", "pulumi:pulumi:Stack", "koinonia-prod", planning=True
        ),
        step_event("resourcePreEvent", "delete", WEB, "api-2", planning=True),
        step_event("resourcePreEvent", "create-replacement", KV, "key-value", keys=["region"]),
        step_event("resourcePreEvent", "replace", KV, "key-value", keys=["region"]),
        step_event("resourcePreEvent", "delete-replaced", KV, "key-value", keys=["region"]),
    ]:
        collector(event)
    plan = collector.plan({"same": 1, "delete": 1, "replace": 1})
    assert plan.to_json() == {
        "stack": "prod",
        "changeSummary": {"delete": 1, "replace": 1, "same": 1},
        "steps": [
            {
                "op": "delete",
                "urn": "urn:pulumi:prod::koinonia::render:services:WebService::api-2",
                "type": "render:services:WebService",
            },
            {
                "op": "replace",
                "urn": "urn:pulumi:prod::koinonia::render:key-value:KeyValue::key-value",
                "type": "render:key-value:KeyValue",
            },
        ],
    }
    assert [s.name for s in plan.data_loss] == ["key-value"]


def test_collector_keeps_mandatory_policy_violations() -> None:
    collector = StepCollector("prod")
    collector(
        EngineEvent.from_json(
            {
                "sequence": 3,
                "timestamp": 1,
                "policyEvent": {
                    "message": "api-2 differs from api-1 in serviceDetails",
                    "color": "never",
                    "policyName": "api-services-identical",
                    "policyPackName": "koinonia",
                    "policyPackVersion": "0.0.1",
                    "policyPackVersionTag": "0.0.1",
                    "enforcementLevel": "mandatory",
                    "resourceUrn": "urn:pulumi:prod::koinonia::render:services:WebService::api-2",
                },
            }
        )
    )
    plan = collector.plan({})
    assert plan.policy_violations == [
        "koinonia/api-services-identical (mandatory) api-2: "
        "api-2 differs from api-1 in serviceDetails"
    ]


def test_render_plan_lists_changes_loudly() -> None:
    console, buffer = _console()
    render_plan(
        console,
        plan_of(
            ("delete", WEB, "api-2"),
            ("delete", ENV, "api-2-env"),
            ("update", ENV, "edge-env"),
            ("same", PG, "postgres"),
        ),
    )
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    assert lines == [
        "Plan for stack prod:",
        "  -  delete   render:services:WebService  api-2",
        "     !! API service api-2: it would get a new id and URL (downtime); no longer declared",
        "  -  delete   render:services:EnvVarsForService  api-2-env",
        "     no longer declared",
        "  ~  update   render:services:EnvVarsForService  edge-env",
        "Resources: 1 to update, 2 to delete, 1 unchanged",
    ]
