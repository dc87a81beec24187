"""`status`: each service of the deployment (instances and edge) at a glance.

It also checks, on every run, what only a real account can prove (docs/first-deploy.md): that
each instance's private address is its Render `slug` (the hostname the edge dials), that the
edge's Caddyfile, read back from its environment, dials exactly the deployment's instances, and
that requests through the edge reach each of them. A mismatch is a warning line and JSON field,
never a failed command: `status` reports, it does not gate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field
from rich.table import Table

from koinonia_infra.console import esc as _esc
from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import RenderApiError
from koinonia_infra.measure.attribution import hostport
from koinonia_infra.measure.health import Probe, health_url, probe_health
from koinonia_infra.measure.samples import Sample
from koinonia_infra.ops.common import ReportModel
from koinonia_infra.render_api import ApiKeyRejected, ApiUnreachable, Deploy, RenderClient

if TYPE_CHECKING:
    from koinonia_infra.targets import DeploymentSource

# GETs through the edge, the answers' upstream header naming who served: `count` samples of `url`.
EdgeSampler = Callable[[str, int], Sequence[Sample]]


class ServiceStatus(ReportModel):
    role: str  # "api-1", "api-2", …, "edge"
    name: str
    service_id: str | None
    suspended: bool | None
    deploy_status: str | None
    deploy_commit: str | None
    deploy_finished_at: datetime | None
    health: str
    healthy: bool
    health_latency_ms: float | None
    url: str
    api_error: str | None = None
    # Instances only: Render's `slug`, the address the edge should dial, and what was seen.
    slug: str | None = None
    private_address: str | None = None
    slug_is_private_host: bool | None = None  # None: not checked (no API, or the sandbox)
    in_edge_upstreams: bool | None = None  # None: the edge's Caddyfile could not be read
    served_via_edge: bool | None = None  # None: the edge was not sampled


class PrivateNetwork(ReportModel):
    """The first-real-run checks of the private network (docs/first-deploy.md)."""

    edge_upstreams: list[str] | None = None  # from the edge's KOINONIA_CADDYFILE
    edge_samples: int = 0
    # True: every instance's slug is its private host, the edge dials each, and each served
    # through it. None: something could not be checked (see `warnings`).
    confirmed: bool | None = None


class StatusReport(ReportModel):
    api_url: str | None
    services: list[ServiceStatus]
    private_network: PrivateNetwork = Field(default_factory=PrivateNetwork)
    warnings: list[str] = Field(default_factory=list)

    def table(self) -> Table:
        table = Table(title="koinonia deployment status", title_justify="left")
        for col in ("service", "id", "suspended", "latest deploy", "/health", "url"):
            table.add_column(col, overflow="fold")
        for s in self.services:
            suspended = {None: "?", True: "[red]yes[/]", False: "no"}[s.suspended]
            health = _esc(
                f"{s.health} ({s.health_latency_ms:.0f} ms)" if s.health_latency_ms else s.health
            )
            table.add_row(
                _esc(f"{s.role} {s.name}" if s.name != s.role else s.role),
                _esc(s.service_id or "-"),
                suspended,
                _deploy_cell(s),
                f"[green]{health}[/]" if s.healthy else f"[red]{health}[/]",
                _esc(s.url),
            )
        return table

    def suspended_instances(self) -> list[tuple[int, str]]:
        """(number, name) of each instance the API reported suspended."""
        return [
            (int(s.role.removeprefix("api-")), s.name)
            for s in self.services
            if s.suspended and s.role != "edge"
        ]


def _deploy_cell(s: ServiceStatus) -> str:
    if s.deploy_status is None:
        return f"[red]{_esc(s.api_error)}[/]" if s.api_error else "-"
    status = _esc(s.deploy_status)
    if status == "live":
        status = "[green]live[/]"
    elif status.endswith(("failed", "canceled")):
        status = f"[red]{status}[/]"
    parts = [status]
    if s.deploy_commit:
        parts.append(_esc(s.deploy_commit[:7]))
    if s.deploy_finished_at:
        parts.append(s.deploy_finished_at.strftime("%Y-%m-%d %H:%M"))
    return " ".join(parts)


@dataclass(slots=True)
class _ApiView:
    name: str | None = None
    suspended: bool | None = None
    deploy: Deploy | None = None
    error: str | None = None
    slug: str | None = None


def _api_view(client: RenderClient, service_id: str) -> _ApiView:
    """What the API says about one service; a rejected key or an unreachable API raise."""
    try:
        service = client.get_service(service_id)
        latest = client.latest_deploy(service_id)
    except (ApiKeyRejected, ApiUnreachable):
        raise
    except RenderApiError as exc:
        # One missing service must not hide the others.
        return _ApiView(error=exc.message)
    return _ApiView(
        name=service.name, suspended=service.is_suspended, deploy=latest, slug=service.slug
    )


def collect_status(
    descriptor: Descriptor,
    client: RenderClient | None,
    probe: Probe,
    sample_edge: EdgeSampler | None = None,
) -> StatusReport:
    """One row per instance and the edge; a rejected key fails the command, an unreachable API
    is said on every row (asked once) and /health is still shown."""
    edge = descriptor.edge
    targets: list[tuple[str, str, str | None, str]] = [
        (f"api-{i.number}", i.name, i.service_id, i.url)
        for i in sorted(descriptor.instances, key=lambda i: i.number)
    ]
    targets.append(
        (
            "edge",
            edge.name if edge else "edge",
            edge.service_id if edge else None,
            descriptor.edge_url,
        )
    )
    services: list[ServiceStatus] = []
    unreachable: str | None = None
    for role, name, service_id, url in targets:
        view = _ApiView()
        if client is not None and service_id is not None:
            if unreachable is not None:
                view = _ApiView(error=unreachable)
            else:
                try:
                    view = _api_view(client, service_id)
                except ApiUnreachable as exc:
                    unreachable = exc.message
                    view = _ApiView(error=unreachable)
        health = probe(health_url(url))
        deploy = view.deploy
        services.append(
            ServiceStatus(
                role=role,
                name=view.name or name,
                service_id=service_id,
                suspended=view.suspended,
                deploy_status=deploy.status if deploy else None,
                deploy_commit=deploy.commit_id if deploy else None,
                deploy_finished_at=deploy.finished_at if deploy else None,
                health=health.detail,
                healthy=health.ok,
                health_latency_ms=health.latency_ms,
                url=url,
                api_error=view.error,
                slug=view.slug if role != "edge" else None,
            )
        )
    report = StatusReport(api_url=client.base_url if client else None, services=services)
    api = client if unreachable is None else None
    _check_private_network(report, descriptor, api, sample_edge)
    return report


def deployment_status(
    source: DeploymentSource, *, on_warning: Callable[[str], None]
) -> StatusReport:
    """`collect_status` of the deployment `source` names; without an API key, /health only
    (`on_warning` says so first)."""
    descriptor = source.descriptor()
    client = source.optional_client(descriptor)
    if client is None:
        on_warning("no Render API key (RENDER_API_KEY): showing /health only")
    try:
        return collect_status(descriptor, client, probe_health, sample_through_edge)
    finally:
        if client is not None:
            client.close()


@dataclass(slots=True)
class _Findings:
    warnings: list[str] = field(default_factory=list)
    unknown: bool = False  # something could not be checked


def _edge_upstreams(
    descriptor: Descriptor, client: RenderClient | None, found: _Findings
) -> list[str] | None:
    """The upstreams of the Caddyfile the edge runs with, read from its environment."""
    from koinonia_infra.caddy import CADDYFILE_ENV, upstreams_of

    edge = descriptor.edge
    if client is None or edge is None or edge.service_id is None:
        found.unknown = True
        return None
    try:
        env = client.env_vars(edge.service_id)
    except ApiKeyRejected:
        raise
    except RenderApiError as exc:
        found.unknown = True
        found.warnings.append(f"the edge's upstreams could not be read: {exc.message}")
        return None
    text = env.get(CADDYFILE_ENV)
    if not text:
        found.warnings.append(
            f"the edge ({edge.service_id}) has no {CADDYFILE_ENV}: it serves no instance"
        )
        return []
    return upstreams_of(text)


def _check_private_network(
    report: StatusReport,
    descriptor: Descriptor,
    client: RenderClient | None,
    sample_edge: EdgeSampler | None,
) -> None:
    from koinonia_infra.ops.timing import is_sandbox

    sandbox = is_sandbox(descriptor)
    found = _Findings()
    upstreams = _edge_upstreams(descriptor, client, found)
    rows = {s.role: s for s in report.services}
    instances = sorted(descriptor.instances, key=lambda i: i.number)
    served: set[str] = set()
    samples = 0
    if sample_edge is not None:
        # Round robin: two rounds give every healthy upstream a turn even after a retry.
        answers = sample_edge(health_url(descriptor.edge_url), 2 * len(instances))
        samples = len(answers)
        served = {a.upstream.strip().lower() for a in answers if a.ok and a.upstream}
    else:
        found.unknown = True
    for inst in instances:
        row = rows[f"api-{inst.number}"]
        address = inst.private_address
        host = address.rsplit(":", 1)[0]
        row.private_address = address
        # What the edge dials: the private address on Render; in the sandbox, which resolves no
        # slug, the loopback address of the instance's URL (sandbox/supervisor.py).
        dialed = (hostport(inst.url) or address) if sandbox else address
        if row.slug is None:
            found.unknown = True
        else:
            row.slug_is_private_host = host == row.slug
            if not row.slug_is_private_host:
                found.warnings.append(
                    f"api-{inst.number}: Render's slug is {row.slug!r} but its private address "
                    f"is {address}: the private hostname is the slug (docs/first-deploy.md); run "
                    "`koinonia-infra up` so the edge follows the service"
                )
        if upstreams is not None:
            row.in_edge_upstreams = dialed in upstreams
            if not row.in_edge_upstreams:
                found.warnings.append(
                    f"api-{inst.number}: the edge's Caddyfile does not dial {dialed} "
                    f"(it dials: {', '.join(upstreams) or 'nothing'})"
                )
        if sample_edge is not None:
            row.served_via_edge = dialed.lower() in served
            if not row.served_via_edge and row.healthy:
                found.warnings.append(
                    f"api-{inst.number}: healthy, yet none of {samples} requests through the "
                    f"edge reached {dialed}: is {host!r} its private hostname? "
                    "(docs/first-deploy.md)"
                )
    declared = {
        (hostport(i.url) or i.private_address) if sandbox else i.private_address for i in instances
    }
    for extra in [u for u in upstreams or [] if u not in declared]:
        found.warnings.append(
            f"the edge also dials {extra}, which is no instance of this deployment"
        )
    report.warnings = found.warnings
    report.private_network = PrivateNetwork(
        edge_upstreams=upstreams,
        edge_samples=samples,
        confirmed=False if found.warnings else (None if found.unknown else True),
    )


def sample_through_edge(url: str, count: int) -> list[Sample]:
    """`count` concurrent GETs of `url` (the edge): who served each is in its upstream header."""
    from koinonia_infra.measure.fetch import fetch_many

    return [f.sample for f in fetch_many([url] * count, timeout=5.0, max_body_bytes=64 << 10)]


def private_network_line(report: StatusReport) -> str | None:
    """What the checks established, in one line, when they all held (warnings say the rest)."""
    if report.private_network.confirmed is not True:
        return None
    reached = ", ".join(
        f"{s.role} at {s.private_address}" for s in report.services if s.role != "edge"
    )
    return f"private network confirmed: the edge reaches {reached}"
