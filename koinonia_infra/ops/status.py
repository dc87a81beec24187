"""`status`: each service of the deployment (instances and edge) at a glance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.table import Table

from koinonia_infra.console import esc as _esc
from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import RenderApiError
from koinonia_infra.ops.common import Probe, ReportModel, health_url
from koinonia_infra.render_api import ApiKeyRejected, ApiUnreachable, Deploy, RenderClient


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


class StatusReport(ReportModel):
    api_url: str | None
    services: list[ServiceStatus]

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
    return _ApiView(name=service.name, suspended=service.is_suspended, deploy=latest)


def collect_status(
    descriptor: Descriptor, client: RenderClient | None, probe: Probe
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
            )
        )
    return StatusReport(api_url=client.base_url if client else None, services=services)
