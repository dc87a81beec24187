"""The deploy package's vocabulary, imported by every module here and by nothing heavier: engine
steps and plans (`Step`, `ChangePlan`, `UpdateResult`), the resource names and operation kinds
that decide guard rails, what an operation reports (`DeployOutcome`, `UpReport`), and the
protocols of its seams (`Engine`, `DeployUI`, `DeployClient`, `InstanceRoller`, `Seams`).

Keeping them in one module is what lets the orchestration (up.py, destroy.py), the engine
adapter (engine.py) and the display (display.py) import each other's types without a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from koinonia_infra.descriptor import Descriptor, InstanceRef
from koinonia_infra.errors import EXIT_OK
from koinonia_infra.measure.health import HealthResult

if TYPE_CHECKING:
    from pulumi.automation.events import EngineEvent

    from koinonia_infra.ops.logs import LogScan


DATASTORE_TYPES = frozenset({"render:postgres:Postgres", "render:key-value:KeyValue"})
WEB_SERVICE = "render:services:WebService"
ENV_VARS = "render:services:EnvVarsForService"
API_SERVICE_NAME = re.compile(r"^api-(\d+)$")
API_ENV_NAME = re.compile(r"^api-(\d+)-env$")
EDGE_NAMES = frozenset({"edge", "edge-env"})

# The engine reports one replacement as up to three steps; they are shown and counted as one.
# The import-/read-/discard- variants are the same for adopted and read resources.
REPLACE_OPS = frozenset(
    {
        "replace", "create-replacement", "delete-replaced",
        "import-replacement", "read-replacement", "discard-replaced",
    }
)  # fmt: skip
DELETE_OPS = frozenset({"delete", "discard"})
QUIET_OPS = frozenset({"same", "read", "refresh"})
# The deploy state that passes; any other terminal state (render_api.DEPLOY_TERMINAL) fails.
DEPLOY_OK_STATES = frozenset({"live"})
DEFAULT_DEPLOY_TIMEOUT = 900.0
# The provider triggers deploys during the update, but Render may list them a little later. Until
# then a service's latest deploy is the previous one (often `live`): waiting on it would pass at
# once. So wait this long (shared by all services) for a deploy created by the update; a service
# that did not change gets none, and its latest deploy is followed instead.
DEPLOY_GRACE = 60.0
# Render's clock and ours may disagree a little.
CLOCK_SKEW = timedelta(seconds=30)


def logical_name(urn: str) -> str:
    """`urn:pulumi:prod::koinonia::render:services:WebService::api-2` → `api-2`."""
    return urn.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class Step:
    """One planned (or performed) resource operation, as the engine announced it."""

    op: str
    urn: str
    type: str
    keys: tuple[str, ...] = ()  # properties forcing a replacement
    diffs: tuple[str, ...] = ()  # properties that change
    # Dotted input paths that change (old vs new inputs of the step event), when known.
    paths: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return logical_name(self.urn)

    @property
    def is_replace(self) -> bool:
        return self.op in REPLACE_OPS

    @property
    def is_delete(self) -> bool:
        return self.op in DELETE_OPS

    @property
    def is_datastore(self) -> bool:
        return self.type in DATASTORE_TYPES

    @property
    def is_api_service(self) -> bool:
        return self.type == WEB_SERVICE and API_SERVICE_NAME.match(self.name) is not None

    @property
    def loud(self) -> bool:
        return self.is_replace or self.is_delete

    @property
    def critical(self) -> bool:
        """A replace or delete that loses data or an instance's identity (id, URL)."""
        return self.loud and (self.is_datastore or self.is_api_service)

    def reason(self) -> str:
        """Why the engine replaces or changes it, when it said so."""
        if self.keys:
            return "replacement forced by changes to " + ", ".join(self.keys)
        if self.diffs:
            return "changes to " + ", ".join(self.diffs)
        if self.is_delete:
            return "no longer declared"
        return ""

    def to_json(self) -> dict[str, str]:
        return {"op": self.op, "urn": self.urn, "type": self.type}


def merge_op(previous: str | None, new: str) -> str:
    if previous is None or previous in QUIET_OPS:
        return "replace" if new in REPLACE_OPS else new
    if previous in REPLACE_OPS or new in REPLACE_OPS:
        return "replace"
    return previous


@dataclass
class ChangePlan:
    """What an update would do: one step per resource (replacements collapsed), and the
    engine's change summary."""

    stack: str
    steps: list[Step] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)
    policy_violations: list[str] = field(default_factory=list)
    # Logical names of the resources the stack adopted (importId/importIds) and their env
    # resources: production that ran before this tool (see `adopted_names`).
    adopted: frozenset[str] = frozenset()

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.op not in QUIET_OPS]

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or any(
            count for op, count in self.summary.items() if op not in QUIET_OPS
        )

    @property
    def data_loss(self) -> list[Step]:
        return [s for s in self.changes if s.is_datastore and s.loud]

    @property
    def instance_loss(self) -> list[Step]:
        """A live API instance replaced or deleted: its service id, URL and history go."""
        return [s for s in self.changes if s.is_api_service and s.loud]

    @property
    def adopted_at_risk(self) -> list[Step]:
        """Steps that replace, delete or redeploy an adopted resource. An update of a service
        or of its env vars is a redeploy: pulumi-render triggers a deploy after either
        (cloudy-sky-software/pulumi-render provider/pkg/provider/provider.go, OnPostUpdate)."""
        return [
            s
            for s in self.changes
            if s.name in self.adopted
            and (s.loud or (s.op == "update" and s.type in (WEB_SERVICE, ENV_VARS)))
        ]

    def to_json(self) -> dict[str, Any]:
        """The documented `preview --format json` shape (see docs/engine.md)."""
        return {
            "stack": self.stack,
            "changeSummary": {op: int(n) for op, n in sorted(self.summary.items())},
            "steps": [
                {**s.to_json(), "adopted": True} if s.name in self.adopted else s.to_json()
                for s in self.changes
            ],
        }


@dataclass
class UpdateResult:
    summary: dict[str, int]
    outputs: dict[str, Any]


@dataclass(frozen=True)
class DeployOutcome:
    service: str
    service_id: str
    status: str
    deploy_id: str | None = None
    # False: Render listed no deploy created by this update within DEPLOY_GRACE (the service
    # probably did not change), so the service's latest deploy was followed instead.
    new: bool = True

    @property
    def ok(self) -> bool:
        return self.status in DEPLOY_OK_STATES

    def describe(self) -> str:
        deploy = f"deploy {self.deploy_id}" if self.deploy_id else "deploy"
        if self.new:
            return f"{self.service}: {deploy} {self.status}"
        return (
            f"{self.service}: no new deploy since the update (unchanged?); "
            f"latest {deploy} {self.status}"
        )


@dataclass(frozen=True)
class VerifyOutcome:
    passed: bool
    summary: str


@dataclass
class UpReport:
    plan: ChangePlan
    updated: bool
    deploys: list[DeployOutcome] = field(default_factory=list)
    verify: VerifyOutcome | None = None
    # Error-level log lines of the instances over the update (None: not read).
    logs: LogScan | None = None

    def to_json(self) -> dict[str, Any]:
        data = self.plan.to_json()
        data["updated"] = self.updated
        data["logs"] = None if self.logs is None else self.logs.to_json()
        data["deploys"] = [
            {
                "service": d.service,
                "serviceId": d.service_id,
                "deployId": d.deploy_id,
                "status": d.status,
                "new": d.new,
            }
            for d in self.deploys
        ]
        data["verify"] = (
            None
            if self.verify is None
            else {"passed": self.verify.passed, "summary": self.verify.summary}
        )
        return data


Level = Literal["info", "success", "warning", "error"]


class DeployUI(Protocol):
    """Everything the user sees or answers during an operation."""

    @property
    def interactive(self) -> bool: ...

    def message(self, level: Level, text: str) -> None: ...

    def show_plan(self, plan: ChangePlan) -> None: ...

    def progress(
        self, operation: Literal["preview", "update"]
    ) -> AbstractContextManager[EventSink]:
        """Live display of one engine operation; yields the `on_event` callback."""
        ...

    def confirm(self, question: str) -> bool:
        """Yes/no, default No."""
        ...

    def ask(self, question: str) -> str: ...


class DeployInfo(Protocol):
    """The fields of koinonia_infra.render_api.Deploy that deploy waiting reads."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...


class DeployClient(Protocol):
    """The part of koinonia_infra.render_api.RenderClient that deploy waiting needs."""

    def latest_deploy(self, service_id: str) -> DeployInfo | None: ...

    def wait_for_deploy(
        self, service_id: str, deploy_id: str | None, *, timeout: float
    ) -> DeployInfo: ...


DescriptorFactory = Callable[[Mapping[str, Any]], Descriptor]
Verifier = Callable[[Descriptor], VerifyOutcome]
HealthCheck = Callable[[InstanceRef], HealthResult]  # measure.health: the one rule
# Runs the targeted update of instance N's held-back changes (the provider then deploys N).
ApplyInstance = Callable[[int], None]
# (descriptor, when the update started) → one outcome per service.
DeployWaiter = Callable[[Descriptor, datetime], list[DeployOutcome]]
# (descriptor, window start, window end) → the error-level log lines of the instances.
ErrorLogs = Callable[[Descriptor, datetime, datetime], "LogScan"]


@dataclass(frozen=True)
class InstanceRollout:
    """How applying the instances' changes one instance at a time ended."""

    ok: bool
    error: str | None
    deploys: list[DeployOutcome]
    exit_code: int = EXIT_OK


class InstanceRoller(Protocol):
    """Applies the held-back changes to `order`'s instances one at a time, health-gated (the
    CLI's is `roll_instance_changes` over ops/rollout.py). `provider_deploys[n]`: how many deploys
    applying N's changes makes the provider start itself (one per update; none for an env
    resource created on an existing service)."""

    def __call__(
        self,
        descriptor: Descriptor,
        order: Sequence[int],
        apply: ApplyInstance,
        provider_deploys: Mapping[int, int],
    ) -> InstanceRollout: ...


@dataclass
class Seams:
    """What an operation needs besides the engine; the CLI builds the real ones."""

    ui: DeployUI
    descriptor_from_outputs: DescriptorFactory
    wait_for_deploys: DeployWaiter
    verify: Verifier
    health: HealthCheck
    # None: instance changes go out with the rest of the update (all deploy at once).
    roll_instances: InstanceRoller | None = None
    # Held around destroy-instance N: the deployment lock, and a refusal while an instance other
    # than N is suspended or deploying (koinonia_infra/ops/guard.py). None: no such check.
    hold: Callable[[Descriptor, int], AbstractContextManager[None]] | None = None
    # Logical names of adopted resources (adopted_names): called out when a step touches them.
    adopted: frozenset[str] = frozenset()
    # The instances' error-level log lines between two moments (ops/logs.py over Render's
    # /logs); None: not read.
    error_logs: ErrorLogs | None = None


EventSink = Callable[["EngineEvent"], None]


class Engine(Protocol):
    """What orchestration (koinonia_infra.deploy) needs from the engine."""

    @property
    def stack_name(self) -> str: ...

    def preview(
        self,
        *,
        on_event: EventSink | None = None,
        diff: bool = False,
        config_file: Path | None = None,
        refresh: bool = False,
    ) -> ChangePlan: ...

    def up(
        self,
        *,
        on_event: EventSink | None = None,
        target: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> UpdateResult:
        """`target`: update only these URNs; `exclude`: everything but these (their changes
        wait for a later update). Used to apply the instances' changes one instance at a time."""
        ...

    def outputs(self) -> dict[str, Any]: ...
