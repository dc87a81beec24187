"""`status`: each service of the deployment (instances and edge) at a glance."""

from __future__ import annotations

from datetime import datetime

from rich.table import Table

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import RenderApiError
from koinonia_infra.ops.common import Probe, ReportModel, health_url
from koinonia_infra.render_api import RenderClient


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

    @property
    def all_healthy(self) -> bool:
        return all(s.healthy and not s.suspended for s in self.services)

    def table(self) -> Table:
        table = Table(title="koinonia deployment status", title_justify="left")
        for col in ("service", "id", "suspended", "latest deploy", "/health", "url"):
            table.add_column(col, overflow="fold")
        for s in self.services:
            suspended = {None: "?", True: "[red]yes[/]", False: "no"}[s.suspended]
            health = (
                f"{s.health} ({s.health_latency_ms:.0f} ms)" if s.health_latency_ms else s.health
            )
            table.add_row(
                f"{s.role} {s.name}" if s.name != s.role else s.role,
                s.service_id or "-",
                suspended,
                _deploy_cell(s),
                f"[green]{health}[/]" if s.healthy else f"[red]{health}[/]",
                s.url,
            )
        return table


def _deploy_cell(s: ServiceStatus) -> str:
    if s.deploy_status is None:
        return f"[red]{s.api_error}[/]" if s.api_error else "-"
    status = s.deploy_status
    if status == "live":
        status = "[green]live[/]"
    elif status.endswith(("failed", "canceled")):
        status = f"[red]{status}[/]"
    parts = [status]
    if s.deploy_commit:
        parts.append(s.deploy_commit[:7])
    if s.deploy_finished_at:
        parts.append(s.deploy_finished_at.strftime("%Y-%m-%d %H:%M"))
    return " ".join(parts)


def _service_status(
    role: str,
    *,
    name: str,
    service_id: str | None,
    url: str,
    health_path: str,
    client: RenderClient | None,
    probe: Probe,
) -> ServiceStatus:
    suspended: bool | None = None
    deploy_status = commit = None
    finished: datetime | None = None
    api_error: str | None = None
    if client is not None and service_id is not None:
        try:
            service = client.get_service(service_id)
            name = service.name
            suspended = service.is_suspended
            latest = client.latest_deploy(service_id)
            if latest is not None:
                deploy_status, commit, finished = (
                    latest.status,
                    latest.commit_id,
                    latest.finished_at,
                )
        except RenderApiError as exc:
            # One unreachable service must not hide the others; a rejected key fails the command.
            if "key was rejected" in exc.message:
                raise
            api_error = exc.message
    health = probe(health_url(url, health_path))
    return ServiceStatus(
        role=role,
        name=name,
        service_id=service_id,
        suspended=suspended,
        deploy_status=deploy_status,
        deploy_commit=commit,
        deploy_finished_at=finished,
        health=health.detail,
        healthy=health.ok,
        health_latency_ms=health.latency_ms,
        url=url,
        api_error=api_error,
    )


def collect_status(
    descriptor: Descriptor, client: RenderClient | None, probe: Probe
) -> StatusReport:
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
        row = _service_status(
            role,
            name=name,
            service_id=service_id,
            url=url,
            health_path="/health",
            client=None if unreachable else client,
            probe=probe,
        )
        if unreachable and service_id is not None:
            row.api_error = unreachable
        elif row.api_error is not None and "unreachable" in row.api_error:
            # One unreachable API is enough waiting: the rows below carry the same error.
            unreachable = row.api_error
        services.append(row)
    return StatusReport(api_url=client.base_url if client else None, services=services)
