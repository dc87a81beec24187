"""Fakes at the engine seam, and engine events built from the engine's event-log JSON."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from pulumi.automation.events import EngineEvent

from koinonia_infra.deploy.types import (
    ChangePlan,
    DeployOutcome,
    Seams,
    Step,
    UpdateResult,
    VerifyOutcome,
    logical_name,
)
from koinonia_infra.descriptor import Descriptor, InstanceRef, parse_descriptor
from koinonia_infra.errors import OperationFailed
from koinonia_infra.measure.health import HealthResult

REPO = Path(__file__).resolve().parents[2]
# Never a real-looking key: a sentinel whose appearance anywhere in output is a leak.
SENTINEL = "sentinel-secret-do-not-print"
PROJECT = "koinonia"


def urn(rtype: str, name: str, stack: str = "prod") -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{rtype}::{name}"


WEB = "render:services:WebService"
ENV = "render:services:EnvVarsForService"
PG = "render:postgres:Postgres"
KV = "render:key-value:KeyValue"


def step_event(
    kind: str,
    op: str,
    rtype: str,
    name: str,
    *,
    seq: int = 1,
    keys: list[str] | None = None,
    diffs: list[str] | None = None,
    planning: bool | None = None,
) -> EngineEvent:
    """`kind`: resourcePreEvent | resOutputsEvent | resOpFailedEvent (event-log JSON)."""
    metadata: dict[str, Any] = {
        "op": op,
        "urn": urn(rtype, name),
        "type": rtype,
        "provider": f"urn:pulumi:prod::{PROJECT}::pulumi:providers:render::default::id",
    }
    if keys is not None:
        metadata["keys"] = keys
    if diffs is not None:
        metadata["diffs"] = diffs
    body: dict[str, Any] = {"metadata": metadata}
    if planning is not None:
        body["planning"] = planning
    if kind == "resOpFailedEvent":
        body.update({"status": 1, "steps": 1})
    return EngineEvent.from_json({"sequence": seq, "timestamp": 1700000000, kind: body})


def diagnostic_event(message: str, severity: str = "error", name: str | None = None) -> EngineEvent:
    diag: dict[str, Any] = {"message": message, "color": "never", "severity": severity}
    if name is not None:
        diag["urn"] = urn(WEB, name)
    return EngineEvent.from_json({"sequence": 9, "timestamp": 1700000000, "diagnosticEvent": diag})


def summary_event(changes: dict[str, int]) -> EngineEvent:
    return EngineEvent.from_json(
        {
            "sequence": 99,
            "timestamp": 1700000000,
            "summaryEvent": {
                "maybeCorrupt": False,
                "durationSeconds": 3,
                "resourceChanges": changes,
                "PolicyPacks": {},
            },
        }
    )


def plan_of(*steps: tuple[str, str, str], stack: str = "prod", **extra: Any) -> ChangePlan:
    built = [Step(op, urn(rtype, name, stack), rtype, **extra) for op, rtype, name in steps]
    summary: dict[str, int] = {}
    for s in built:
        summary[s.op] = summary.get(s.op, 0) + 1
    return ChangePlan(stack=stack, steps=built, summary=summary)


OUTPUTS: dict[str, Any] = {
    "edgeUrl": "https://koinonia-edge.example.test",
    "instances": [
        {
            "number": n,
            "name": "koinonia-sms-backend" if n == 1 else f"koinonia-sms-backend-{n}",
            "serviceId": f"srv-api{n}",
            "url": f"https://api{n}.example.test",
            "privateAddress": f"koinonia-sms-backend-{n}:8080",
        }
        for n in (1, 2)
    ],
    "postgresId": "dpg-1",
    "keyValueId": "red-1",
    "region": "oregon",
}


def descriptor_of(outputs: dict[str, Any]) -> Descriptor:
    data = {**outputs, "stack": "prod", "edge": {"name": "koinonia-edge", "serviceId": "srv-edge"}}
    return parse_descriptor(data, source="test outputs")


class FakeEngine:
    """The `Engine` protocol, scripted: a plan for preview, events to replay, failures."""

    def __init__(
        self,
        plan: ChangePlan,
        *,
        events: list[EngineEvent] | None = None,
        up_error: BaseException | None = None,
        outputs: dict[str, Any] | None = None,
        outputs_after_up: dict[str, Any] | None = None,
        preview_error: BaseException | None = None,
    ) -> None:
        self.plan = plan
        self.events = events or []
        self.up_error = up_error
        self.preview_error = preview_error
        self._outputs = outputs if outputs is not None else OUTPUTS
        self._after = outputs_after_up
        self.calls: list[str] = []
        self.preview_config_text: str | None = None
        # What each `up` was limited to: ("target" | "exclude" | None, [logical names]).
        self.ups: list[tuple[str | None, list[str]]] = []
        # Runs on a targeted `up` with the logical names (e.g. the provider's deploy).
        self.on_target: Callable[[list[str]], None] | None = None

    @property
    def stack_name(self) -> str:
        return self.plan.stack

    def preview(
        self, *, on_event: Any = None, diff: bool = False, config_file: Path | None = None
    ) -> ChangePlan:
        self.calls.append("preview")
        if config_file is not None:
            self.preview_config_text = config_file.read_text(encoding="utf-8")
        for event in self.events:
            if on_event is not None:
                on_event(event)
        if self.preview_error is not None:
            raise self.preview_error
        return self.plan

    def up(
        self,
        *,
        on_event: Any = None,
        target: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> UpdateResult:
        self.calls.append("up")
        names = [logical_name(u) for u in (target or exclude or [])]
        self.ups.append(("target" if target else "exclude" if exclude else None, names))
        if self.up_error is not None:
            raise self.up_error
        if target and self.on_target is not None:
            self.on_target(names)
        if self._after is not None:
            self._outputs = self._after
        return UpdateResult(summary=dict(self.plan.summary), outputs=self._outputs)

    def outputs(self) -> dict[str, Any]:
        self.calls.append("outputs")
        return self._outputs


class FakeUI:
    def __init__(self, *, interactive: bool = True, confirm: bool = True, answer: str = "") -> None:
        self._interactive = interactive
        self._confirm = confirm
        self._answer = answer
        self.messages: list[tuple[str, str]] = []
        self.questions: list[str] = []
        self.events: list[EngineEvent] = []
        self.plans: list[ChangePlan] = []

    @property
    def interactive(self) -> bool:
        return self._interactive

    def message(self, level: str, text: str) -> None:
        self.messages.append((level, text))

    def show_plan(self, plan: ChangePlan) -> None:
        self.plans.append(plan)

    @contextmanager
    def progress(self, operation: str) -> Iterator[Any]:
        yield self.events.append

    def confirm(self, question: str) -> bool:
        self.questions.append(question)
        return self._confirm

    def ask(self, question: str) -> str:
        self.questions.append(question)
        return self._answer

    def text(self) -> str:
        return "\n".join(text for _, text in self.messages)


class Recorder:
    """Records which seams ran, with scripted results."""

    def __init__(
        self,
        *,
        deploy_status: str = "live",
        verify_passed: bool = True,
        unhealthy: frozenset[int] = frozenset(),
    ) -> None:
        self.deploy_status = deploy_status
        self.verify_passed = verify_passed
        self.unhealthy = unhealthy
        self.waited: list[list[str]] = []
        self.since: list[datetime] = []
        self.verified: list[list[int]] = []
        self.health_checked: list[int] = []

    def seams(self, ui: FakeUI) -> Seams:
        return Seams(
            ui=ui,
            descriptor_from_outputs=lambda outputs: descriptor_of(dict(outputs)),
            wait_for_deploys=self.wait,
            verify=self.verify,
            health=self.health,
        )

    def wait(self, descriptor: Descriptor, since: datetime) -> list[DeployOutcome]:
        ids = [i.service_id for i in descriptor.instances] + ["srv-edge"]
        self.waited.append(ids)
        self.since.append(since)
        return [DeployOutcome(service=s, service_id=s, status=self.deploy_status) for s in ids]

    def verify(self, descriptor: Descriptor) -> VerifyOutcome:
        self.verified.append(sorted(i.number for i in descriptor.instances))
        if self.verify_passed:
            return VerifyOutcome(True, "all checks passed")
        return VerifyOutcome(False, "1 check(s) failed: distribution")

    def health(self, instance: InstanceRef) -> HealthResult:
        self.health_checked.append(instance.number)
        ok = instance.number not in self.unhealthy
        return HealthResult(ok, "ok" if ok else "HTTP 503")


def engine_failure(message: str = "pulumi up failed") -> OperationFailed:
    return OperationFailed(message)
