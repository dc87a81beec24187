"""Orchestration of `preview`, `up` and `destroy-instance`, free of engine details.

Everything here talks to the engine through the `Engine` protocol (koinonia_infra.engine), to the
user through a `DeployUI`, and to Render and the deployment through small injected callables, so
every decision (confirmation, refusals, guard rails, the stack-file restore, deploy waiting, exit
codes) is tested with fakes at those seams.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from koinonia_infra.descriptor import Descriptor, InstanceRef
from koinonia_infra.errors import (
    EXIT_OK,
    EnvironmentProblem,
    Interrupted,
    KoinoniaError,
    OperationFailed,
    StackLocked,
    UsageError,
)
from koinonia_infra.measure.health import HealthResult
from koinonia_infra.measure.poll import poll

if TYPE_CHECKING:
    from koinonia_infra.engine import Engine, EventSink
    from koinonia_infra.measure.health import Probe
    from koinonia_infra.measure.poll import Sleep
    from koinonia_infra.ops.common import StartTraffic
    from koinonia_infra.ops.logs import LogScan
    from koinonia_infra.render_api import Deploy, RenderClient
    from koinonia_infra.settings import Settings

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
# Runs the update of instance N's env resource alone (the provider then deploys N).
ApplyEnv = Callable[[int], None]
# (descriptor, when the update started) → one outcome per service.
DeployWaiter = Callable[[Descriptor, datetime], list[DeployOutcome]]
# (descriptor, window start, window end) → the error-level log lines of the instances.
ErrorLogs = Callable[[Descriptor, datetime, datetime], "LogScan"]


@dataclass(frozen=True)
class EnvRollout:
    """How applying env changes one instance at a time ended."""

    ok: bool
    error: str | None
    deploys: list[DeployOutcome]
    exit_code: int = EXIT_OK


class EnvRoller(Protocol):
    """Applies env changes to `order`'s instances one at a time, health-gated (the CLI's is
    `roll_env_changes` over ops/rollout.py). `provider_deploys[n]`: whether applying N's env
    makes the provider deploy N itself (an update) or not (a create on an existing service)."""

    def __call__(
        self,
        descriptor: Descriptor,
        order: Sequence[int],
        apply: ApplyEnv,
        provider_deploys: Mapping[int, bool],
    ) -> EnvRollout: ...


@dataclass
class Seams:
    """What an operation needs besides the engine; the CLI builds the real ones."""

    ui: DeployUI
    descriptor_from_outputs: DescriptorFactory
    wait_for_deploys: DeployWaiter
    verify: Verifier
    health: HealthCheck
    # None: env changes go out with the rest of the update (all instances deploy at once).
    roll_env: EnvRoller | None = None
    # Held around destroy-instance N: the deployment lock, and a refusal while an instance other
    # than N is suspended or deploying (koinonia_infra/ops/guard.py). None: no such check.
    hold: Callable[[Descriptor, int], AbstractContextManager[None]] | None = None
    # Logical names of adopted resources (adopted_names): called out when a step touches them.
    adopted: frozenset[str] = frozenset()
    # The instances' error-level log lines between two moments (ops/logs.py over Render's
    # /logs); None: not read.
    error_logs: ErrorLogs | None = None


# ------------------------------------------------------------------------------------------
# Deploy waiting
# ------------------------------------------------------------------------------------------


def services_of(descriptor: Descriptor) -> list[tuple[str, str]]:
    """(name, service id) of every API instance and, when known, the edge."""
    result = [(i.name, i.service_id) for i in sorted(descriptor.instances, key=lambda i: i.number)]
    if descriptor.edge is not None and descriptor.edge.service_id:
        result.append((descriptor.edge.name, descriptor.edge.service_id))
    return result


def _is_new(deploy: DeployInfo | None, since: datetime) -> bool:
    created = deploy.created_at if deploy is not None else None
    if created is None:
        return False  # cannot tell: treated as older than the update
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created >= since - CLOCK_SKEW


def wait_for_deploys(
    client: DeployClient,
    descriptor: Descriptor,
    *,
    since: datetime,
    timeout: float = DEFAULT_DEPLOY_TIMEOUT,
    grace: float = DEPLOY_GRACE,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> list[DeployOutcome]:
    """Wait for each service's deploy created at/after `since` (when the update started) to reach
    a terminal state, within one deadline shared by all services. The provider triggers deploys
    but never waits for them. A service with no such deploy within `grace` (shared too) gets its
    latest deploy followed instead, and the outcome says so (`new=False`)."""
    import time

    now = clock or time.monotonic
    pause = sleep or time.sleep
    started = now()
    deadline = started + timeout
    grace_end = started + min(grace, timeout)
    outcomes: list[DeployOutcome] = []
    for name, service_id in services_of(descriptor):
        try:
            deploy, new = _follow(
                client,
                service_id,
                since=since,
                deadline=deadline,
                grace_end=grace_end,
                now=now,
                pause=pause,
            )
        except OperationFailed as exc:
            raise OperationFailed(f"{name}: {exc.message}", lines=exc.lines) from None
        outcomes.append(DeployOutcome(name, service_id, str(deploy.status), deploy.id, new=new))
    return outcomes


def _follow(
    client: DeployClient,
    service_id: str,
    *,
    since: datetime,
    deadline: float,
    grace_end: float,
    now: Callable[[], float],
    pause: Callable[[float], None],
) -> tuple[DeployInfo, bool]:
    """The terminal deploy to judge the service by, and whether the update created it."""
    latest = poll(
        lambda: client.latest_deploy(service_id),
        lambda found: _is_new(found, since),
        deadline=grace_end,
        clock=now,
        sleep=pause,
        interval=1.0,
        max_interval=5.0,
    )
    if latest is None or not _is_new(latest, since):
        return client.wait_for_deploy(service_id, None, timeout=max(1.0, deadline - now())), False
    deploy = latest
    while True:
        deploy = client.wait_for_deploy(service_id, deploy.id, timeout=max(1.0, deadline - now()))
        if deploy.status in DEPLOY_OK_STATES or now() >= deadline:
            break
        # A later deploy of the same update (service and env vars both changed) may cancel or
        # supersede the one followed: the newest one decides.
        newer = client.latest_deploy(service_id)
        if newer is None or newer.id == deploy.id or not _is_new(newer, since):
            break
        deploy = newer
    return deploy, True


def await_deploys(seams: Seams, descriptor: Descriptor, since: datetime) -> list[DeployOutcome]:
    """Wait for the update's deploys, show each outcome, fail naming the services that failed."""
    ui = seams.ui
    ui.message("info", "waiting for Render deploys to finish")
    outcomes = seams.wait_for_deploys(descriptor, since)
    for deploy in outcomes:
        ui.message("success" if deploy.ok else "error", deploy.describe())
    check_deploys(outcomes)
    return outcomes


def check_deploys(outcomes: Sequence[DeployOutcome]) -> None:
    failed = [o for o in outcomes if not o.ok]
    if failed:
        first = failed[0]
        raise OperationFailed(
            f"deploy of {first.service} ({first.service_id}) ended {first.status}",
            lines=[f"deploy of {o.service} ({o.service_id}) ended {o.status}" for o in failed[1:]],
        )


# ------------------------------------------------------------------------------------------
# Env changes: one instance at a time
# ------------------------------------------------------------------------------------------
#
# pulumi-render answers every UPDATE of an EnvVarsForService with `POST /services/{id}/deploys`
# and does not wait for it (cloudy-sky-software/pulumi-render,
# provider/pkg/provider/provider.go, OnPostUpdate). The engine updates independent resources in
# parallel, so one env change would redeploy every instance at once; chaining the env resources
# with depends_on would not help, as each step ends when the PUT returns, long before its deploy
# is live. So `up` leaves the API instances' env changes out of the main update (`--exclude`: an
# excluded resource gets a `same` step, pulumi/pulumi pkg/resource/deploy/step_generator.go),
# then applies them one instance at a time with a targeted update (`--target`), each followed by
# the provider's deploy, `live`, the instance's /health and the edge routing to it again
# (ops/rollout.py, the same loop as `rollout`) before the next instance is touched. Creating an
# env resource PUTs without deploying (OnPostCreate), so an existing (adopted) service getting
# its first env resource is deployed by the rollout itself.


def env_changes(plan: ChangePlan) -> dict[int, Step]:
    """Instance number → its env step, for each RUNNING instance whose environment this update
    changes. New or replaced services are left out: they are created with their environment
    (program/api.py), so their first deploy already has it."""
    service_ops = {
        int(match.group(1)): step.op
        for step in plan.steps
        if step.type == WEB_SERVICE and (match := API_SERVICE_NAME.match(step.name))
    }
    found: dict[int, Step] = {}
    for step in plan.changes:
        match = API_ENV_NAME.match(step.name)
        if step.type != ENV_VARS or match is None or step.op not in ("update", "create"):
            continue
        number = int(match.group(1))
        service_op = service_ops.get(number, "same")
        if service_op == "create" or service_op in REPLACE_OPS:
            continue
        found[number] = step
    return found


def _another_deploy(
    client: RenderClient,
    service_id: str,
    previous: str | None,
    *,
    grace: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Deploy | None:
    """The deploy listed after `previous` (the provider's), polling up to `grace` seconds: Render
    may list a new deploy a little late. Ids, not timestamps: no clock skew to allow for."""
    latest = poll(
        lambda: client.latest_deploy(service_id),
        lambda found: found is not None and found.id != previous,
        deadline=clock() + grace,
        clock=clock,
        sleep=sleep,
        interval=0.5,
        max_interval=5.0,
    )
    return latest if latest is not None and latest.id != previous else None


_EXIT_ERRORS: dict[int, type[KoinoniaError]] = {
    Interrupted.exit_code: Interrupted,
    StackLocked.exit_code: StackLocked,
    EnvironmentProblem.exit_code: EnvironmentProblem,
    UsageError.exit_code: UsageError,
}


def roll_env_changes(
    descriptor: Descriptor,
    order: Sequence[int],
    apply: ApplyEnv,
    provider_deploys: Mapping[int, bool],
    *,
    client: RenderClient,
    start_traffic: StartTraffic,
    probe: Probe,
    sleep: Sleep | None = None,
    clock: Callable[[], float] | None = None,
    deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT,
    grace: float = DEPLOY_GRACE,
    on_event: Callable[[str], None] | None = None,
) -> EnvRollout:
    """The real `EnvRoller`: ops/rollout.py's health-gated loop, where each instance's deploy is
    started by applying its env change (the provider's deploy), or triggered when applying it
    deploys nothing (a create) or the provider's trigger failed (it only logs a warning then)."""
    import time

    from koinonia_infra.ops.rollout import RolloutStep, run_rollout

    pause = sleep or time.sleep
    now = clock or time.monotonic

    def trigger(step: RolloutStep) -> Deploy:
        before = client.latest_deploy(step.service_id)
        apply(step.instance)
        if provider_deploys.get(step.instance, False):
            found = _another_deploy(
                client,
                step.service_id,
                before.id if before else None,
                grace=grace,
                clock=now,
                sleep=pause,
            )
            if found is not None:
                return found
        return client.trigger_deploy(step.service_id)

    report = run_rollout(
        descriptor,
        client,
        order=order,
        start_traffic=start_traffic,
        probe=probe,
        sleep=pause,
        deploy_timeout=deploy_timeout,
        on_event=on_event,
        trigger=trigger,
    )
    deploys = [
        DeployOutcome(s.service, s.service_id, s.deploy_status or "unknown", s.deploy)
        for s in report.steps
        if s.deploy is not None
    ]
    if report.outcome == "passed":
        return EnvRollout(True, None, deploys)
    untouched = [f"api-{s.instance}" for s in report.steps if s.outcome == "untouched"]
    error = report.error or f"env rollout {report.outcome}"
    if untouched:
        error += f"; {', '.join(untouched)} keep(s) the previous environment"
    return EnvRollout(False, error, deploys, exit_code=report.exit_code)


def roll_env(
    engine: Engine, seams: Seams, descriptor: Descriptor, changes: Mapping[int, Step]
) -> list[DeployOutcome]:
    """Apply the held-back env changes one instance at a time; fail naming the instance."""
    ui, roller = seams.ui, seams.roll_env
    assert roller is not None
    # The runbook's order (ops/rollout.py parse_order): highest instance number first.
    order = sorted(changes, reverse=True)
    ui.message(
        "info",
        "applying env changes one instance at a time: " + ", ".join(f"api-{n}" for n in order),
    )

    def apply(number: int) -> None:
        ui.message("info", f"api-{number}: applying its env change ({changes[number].name})")
        with ui.progress("update") as on_event:
            engine.up(on_event=on_event, target=[changes[number].urn])

    outcome = roller(
        descriptor, order, apply, {n: step.op == "update" for n, step in changes.items()}
    )
    for deploy in outcome.deploys:
        ui.message("success" if deploy.ok else "error", deploy.describe())
    if not outcome.ok:
        error_type = _EXIT_ERRORS.get(outcome.exit_code, OperationFailed)
        raise error_type(outcome.error or "the env rollout failed")
    return outcome.deploys


# ------------------------------------------------------------------------------------------
# preview / up
# ------------------------------------------------------------------------------------------


def adopted_names(settings: Settings | None) -> frozenset[str]:
    """The logical names of what the stack adopted, from its import ids."""
    if settings is None:
        return frozenset()
    names = {f"api-{n}" for n in settings.api.import_ids} | {
        f"api-{n}-env" for n in settings.api.import_ids
    }
    if settings.postgres.import_id:
        names.add("postgres")
    if settings.key_value.import_id:
        names.add("key-value")
    return frozenset(names)


def run_preview(
    engine: Engine,
    ui: DeployUI,
    *,
    diff: bool = False,
    adopted: frozenset[str] = frozenset(),
    refresh: bool = False,
) -> ChangePlan:
    with ui.progress("preview") as on_event:
        # `refresh` passed only when asked: engines without it (test fakes) keep working.
        if refresh:
            plan = engine.preview(on_event=on_event, diff=diff, refresh=True)
        else:
            plan = engine.preview(on_event=on_event, diff=diff)
    plan.adopted = adopted
    if refresh:
        from koinonia_infra.adopt.drift import filter_refresh_noise

        filtered = filter_refresh_noise(plan)
        plan = filtered.plan
        if filtered.noise:
            ui.message(
                "info",
                "not counted: the provider's known refresh noise on "
                + ", ".join(filtered.noise)
                + " (serviceDetails fields Render returns and the program never declares; "
                "see docs/adopt.md)",
            )
    ui.show_plan(plan)
    return plan


def require_confirmation(ui: DeployUI, *, yes: bool, what: str) -> None:
    """--yes, or an interactive "yes"; without a terminal and without --yes, refuse."""
    if yes:
        return
    if not ui.interactive:
        raise UsageError(f"refusing to {what} without confirmation: no terminal; pass --yes")
    if not ui.confirm(f"Do you want to {what}?"):
        raise OperationFailed(f"cancelled: did not {what}; nothing was changed")


def refuse_data_loss(plan: ChangePlan, *, allow: bool) -> None:
    steps = plan.data_loss
    if not steps or allow:
        return
    raise UsageError(
        f"refusing to {steps[0].op} datastore {steps[0].name}: it holds production data; "
        "fix the settings, or pass --allow-data-loss if this is really intended",
        lines=[f"{s.op} {s.type} {s.name}: {s.reason() or 'no reason given'}" for s in steps[1:]],
    )


def refuse_instance_loss(plan: ChangePlan, *, allow: bool) -> None:
    """As refuse_data_loss, for the API instances: a replaced instance gets a new id and URL
    and serves nothing until its first deploy is live. Removing one on purpose is
    `destroy-instance N`, which does not pass here."""
    steps = plan.instance_loss
    if not steps or allow:
        return
    raise UsageError(
        f"refusing to {steps[0].op} live API instance {steps[0].name}: it would get a new id "
        "and URL (downtime); fix the settings, use `destroy-instance N` to remove an instance, "
        "or pass --allow-instance-replacement if this is really intended",
        lines=[f"{s.op} {s.type} {s.name}: {s.reason() or 'no reason given'}" for s in steps[1:]],
    )


def run_up(
    engine: Engine,
    seams: Seams,
    *,
    yes: bool = False,
    allow_data_loss: bool = False,
    allow_instance_replacement: bool = False,
    skip_verify: bool = False,
) -> UpReport:
    """preview → plan → confirm → update → wait for deploys → verify."""
    ui = seams.ui
    plan = run_preview(engine, ui, adopted=seams.adopted)
    report = UpReport(plan=plan, updated=False)
    if plan.policy_violations:
        raise OperationFailed(
            f"policy violations in stack {plan.stack}; nothing was changed",
            lines=plan.policy_violations,
        )
    if not plan.has_changes:
        ui.message("success", f"stack {plan.stack} is up to date: no changes")
    else:
        refuse_data_loss(plan, allow=allow_data_loss)
        refuse_instance_loss(plan, allow=allow_instance_replacement)
        require_confirmation(ui, yes=yes, what=f"update stack {plan.stack}")
        held = env_changes(plan) if seams.roll_env is not None else {}
        held_urns = {step.urn for step in held.values()}
        # Only held-back env changes: no main update (and no deploys of it to wait for).
        up_started = datetime.now(UTC)
        if not held or any(step.urn not in held_urns for step in plan.changes):
            started = datetime.now(UTC)
            with ui.progress("update") as on_event:
                result = engine.up(on_event=on_event, exclude=sorted(held_urns) or None)
            ui.message("success", f"stack {plan.stack} updated")
            descriptor = seams.descriptor_from_outputs(result.outputs)
            report.deploys = await_deploys(seams, descriptor, started)
        else:
            descriptor = seams.descriptor_from_outputs(engine.outputs())
        report.updated = True
        if held:
            report.deploys += roll_env(engine, seams, descriptor, held)
        report.logs = _report_error_logs(seams, descriptor, up_started)
    if skip_verify:
        ui.message("warning", "verification skipped (--skip-verify)")
        return report
    descriptor = seams.descriptor_from_outputs(engine.outputs())
    report.verify = _verify(seams, descriptor)
    return report


def _report_error_logs(seams: Seams, descriptor: Descriptor, since: datetime) -> LogScan | None:
    """The instances' error-level lines over the update's window, shown one per line. They
    inform (a deploy's own verdict and `verify` decide whether `up` passed): a restart during
    a deploy commonly logs a line or two that says nothing about the new version."""
    if seams.error_logs is None:
        return None
    scan = seams.error_logs(descriptor, since, datetime.now(UTC))
    if not scan.read:
        seams.ui.message("warning", f"instance logs during the update {scan.summary()}")
    elif scan.error_count == 0:
        seams.ui.message("success", "no error lines in the instances' logs during the update")
    else:
        seams.ui.message(
            "warning", f"{scan.error_count} error line(s) in the instances' logs during the update"
        )
        for line in scan.first:
            seams.ui.message("warning", f"  {line}")
    return scan


def _verify(seams: Seams, descriptor: Descriptor) -> VerifyOutcome:
    outcome = seams.verify(descriptor)
    if not outcome.passed:
        raise OperationFailed(f"verification failed: {outcome.summary}")
    seams.ui.message("success", f"verification passed: {outcome.summary}")
    return outcome


# ------------------------------------------------------------------------------------------
# destroy-instance
# ------------------------------------------------------------------------------------------


def check_destroy_request(number: int, declared: Sequence[int]) -> None:
    """Before any engine: N must be declared, and must not be the last instance."""
    listed = ", ".join(str(n) for n in declared)
    if number not in declared:
        raise UsageError(f"instance {number} is not declared in api.instances ({listed})")
    if len(declared) == 1:
        raise UsageError(
            f"refusing to remove instance {number}: it is the last instance; the API would go down"
        )


def check_survivors(
    descriptor: Descriptor, number: int, health: HealthCheck, *, force: bool, ui: DeployUI
) -> list[tuple[InstanceRef, HealthResult]]:
    survivors = [
        i for i in sorted(descriptor.instances, key=lambda i: i.number) if i.number != number
    ]
    results = [(instance, health(instance)) for instance in survivors]
    for instance, result in results:
        detail = result.detail
        if result.ok:
            ms = result.latency_ms
            detail = "healthy" if ms is None else f"healthy ({ms:.0f} ms)"
        ui.message(
            "success" if result.ok else "error",
            f"instance {instance.number} ({instance.name}): {detail}",
        )
    sick = [(i, r) for i, r in results if not r.ok]
    if not survivors:
        raise UsageError(f"no surviving instance in the stack outputs besides {number}")
    if sick and not force:
        first, why = sick[0]
        raise OperationFailed(
            f"refusing to remove instance {number}: surviving instance "
            f"{first.number} ({first.name}) is unhealthy ({why.detail}); "
            "fix it first, or pass --force",
        )
    if sick:
        ui.message("warning", "continuing despite unhealthy survivors (--force)")
    return results


def unexpected_destroy_steps(plan: ChangePlan, number: int) -> tuple[list[Step], bool]:
    """Steps other than: instance N's resources deleted, the edge updated. Also whether N's
    service is actually among the deletions."""
    prefix = f"api-{number}"
    unexpected: list[Step] = []
    deletes_service = False
    for step in plan.changes:
        own = step.name == prefix or step.name.startswith(prefix + "-")
        if own and step.op in DELETE_OPS:
            deletes_service = deletes_service or step.is_api_service
            continue
        if step.name in EDGE_NAMES and step.op == "update":
            continue
        if step.type == "pulumi:pulumi:Stack" and step.op == "update":
            continue
        unexpected.append(step)
    return unexpected, deletes_service


@dataclass
class DestroyRequest:
    number: int
    service_name: str
    stack_file: Path
    new_stack_text: str
    yes: bool = False
    force: bool = False


def run_destroy_instance(
    engine: Engine,
    seams: Seams,
    request: DestroyRequest,
    *,
    current: Descriptor,
) -> UpReport:
    """The runbook's rollback: survivors healthy → exact preview → typed confirmation → edit the
    stack file → up (restore the file if it fails) → wait for deploys → verify the survivors."""
    ui = seams.ui
    number = request.number
    check_survivors(current, number, seams.health, force=request.force, ui=ui)

    from koinonia_infra.files import write_atomic

    # Atomic writes: on a full disk the stack file is never left truncated (write_text would
    # empty it first), and the error names the file (koinonia_infra/files.py).
    original = request.stack_file.read_bytes()
    preview_file = request.stack_file.with_name(f".{request.stack_file.name}.destroy-{number}")
    write_atomic(preview_file, request.new_stack_text)
    try:
        with ui.progress("preview") as on_event:
            plan = engine.preview(on_event=on_event, config_file=preview_file)
    finally:
        preview_file.unlink(missing_ok=True)
    ui.show_plan(plan)
    unexpected, deletes_service = unexpected_destroy_steps(plan, number)
    if unexpected or not deletes_service:
        lines = [f"{s.op} {s.type} {s.name}" for s in unexpected]
        if not deletes_service:
            lines.append(f"the preview does not delete api-{number} (already gone?)")
        raise OperationFailed(
            f"refusing to remove instance {number}: the preview does more than delete "
            f"api-{number} and update the edge; nothing was changed",
            lines=lines,
        )
    if plan.policy_violations:
        raise OperationFailed(
            "policy violations; nothing was changed", lines=plan.policy_violations
        )
    _confirm_destroy(ui, request)

    started = datetime.now(UTC)
    write_atomic(request.stack_file, request.new_stack_text)
    try:
        with ui.progress("update") as on_event:
            result = engine.up(on_event=on_event)
    except BaseException as exc:
        write_atomic(request.stack_file, original)
        note = f"{request.stack_file.name} restored to its previous content"
        if isinstance(exc, KoinoniaError):
            exc.lines.append(note)
        else:
            ui.message("warning", note)
        raise
    report = UpReport(plan=plan, updated=True)
    ui.message(
        "success", f"instance {number} ({request.service_name}) removed from stack {plan.stack}"
    )
    try:
        descriptor = seams.descriptor_from_outputs(result.outputs)
        report.deploys = await_deploys(seams, descriptor, started)
        report.verify = _verify(seams, descriptor)
    finally:
        ui.message(
            "warning",
            f"commit {request.stack_file.name} now: otherwise the next deploy from main brings "
            f"instance {number} back",
        )
    return report


def _confirm_destroy(ui: DeployUI, request: DestroyRequest) -> None:
    if request.yes:
        return
    what = f"remove instance {request.number}"
    if not ui.interactive:
        raise UsageError(f"refusing to {what} without confirmation: no terminal; pass --yes")
    answer = ui.ask(f"Type the service name ({request.service_name}) to {what}")
    if answer.strip() != request.service_name:
        raise OperationFailed(f"cancelled: the name did not match; did not {what}")


def http_health(
    path: str = "/health", *, timeout: float = 5.0, transport: Any = None
) -> HealthCheck:
    """A HealthCheck doing `GET <instance url><path>`, judged by the one rule
    (`measure.health`: 200 with a JSON `"status": "ok"`)."""
    from koinonia_infra.measure.health import health_url, probe_health

    def check(instance: InstanceRef) -> HealthResult:
        return probe_health(health_url(instance.url, path), timeout=timeout, transport=transport)

    return check
