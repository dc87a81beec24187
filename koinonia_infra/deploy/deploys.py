"""Waiting for the Render deploys an update triggered, and judging how they ended."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from koinonia_infra.deploy.types import (
    CLOCK_SKEW,
    DEFAULT_DEPLOY_TIMEOUT,
    DEPLOY_GRACE,
    DEPLOY_OK_STATES,
    DeployClient,
    DeployInfo,
    DeployOutcome,
    Seams,
)
from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import OperationFailed
from koinonia_infra.measure.poll import poll


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
