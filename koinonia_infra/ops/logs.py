"""Error-level log lines over an operation's own window: what `drill failover`, `rollout`, `up`
and the verify sign-off report instead of "look at the dashboard's logs".

Render's `GET /logs` (cloudy-sky-software/pulumi-render, provider/cmd/pulumi-gen-render/
openapi.yml, `/logs`): `ownerId` (required: the workspace), `resource` (required, several ids of
one owner and region), `startTime`/`endTime`, `direction`, `level` (severity), `type` (`app`,
`request`, `build`), `limit`; paged by `hasMore` → `nextStartTime`/`nextEndTime`. The paging
and parsing are `RenderClient.list_logs`; secrets are taken out of each line by the one
redaction helper `monitor.redact.redact_line`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

from pydantic import Field

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import RenderApiError
from koinonia_infra.monitor.redact import redact_line
from koinonia_infra.ops.common import Check, ReportModel
from koinonia_infra.render_api import RenderClient

FIRST_LINES: Final = 5
# A drill's or rollout's window holds a few thousand request lines at most; error lines past
# this many say nothing the count does not.
MAX_ENTRIES: Final = 500
LINE_LENGTH: Final = 200


class LogScan(ReportModel):
    """The error-level lines of some services over a window: counted, the first few shown."""

    read: bool
    start: datetime
    end: datetime
    types: list[str] = Field(default_factory=list)  # empty: every type
    error_count: int = 0
    first: list[str] = Field(default_factory=list)  # "api-1: <line>", redacted, one line each
    reason: str | None = None  # why the logs could not be read

    def summary(self) -> str:
        if not self.read:
            return f"not read: {self.reason or 'unknown reason'}"
        if not self.error_count:
            return "no error lines"
        shown = "; ".join(self.first)
        more = self.error_count - len(self.first)
        tail = f" (+{more} more)" if more > 0 else ""
        return f"{self.error_count} error line(s): {shown}{tail}"


def now() -> datetime:
    return datetime.now(UTC)


def instance_roles(descriptor: Descriptor) -> dict[str, str]:
    """Service id → `api-N` for every instance of the deployment."""
    return {i.service_id: f"api-{i.number}" for i in descriptor.instances}


def owner_of(client: RenderClient, service_ids: Iterable[str]) -> str | None:
    """The workspace of the services (`ownerId` of a service in the spec): /logs requires it,
    and a descriptor does not carry it."""
    for sid in service_ids:
        owner = client.service_json(sid).get("ownerId")
        if isinstance(owner, str) and owner:
            return owner
    return None


def find_owner(client: RenderClient, service_ids: Iterable[str]) -> str | None:
    """`owner_of`, or None when the API cannot say: an operation resolves it before its window
    starts (the scan at the end then makes one call), and a failure here is the scan's."""
    try:
        return owner_of(client, service_ids)
    except RenderApiError:
        return None


def scan_errors(
    client: RenderClient,
    roles: Mapping[str, str],
    *,
    start: datetime,
    end: datetime,
    owner: str | None = None,
    types: list[str] | None = None,
    known_secrets: Iterable[str] = (),
) -> LogScan:
    """Error-level lines of the services `roles` (service id → `api-1`, `edge`, …) between
    `start` and `end`. An API failure is reported in the scan (`read` false), never raised:
    the operation it qualifies already has its own verdict."""
    scan = LogScan(read=False, start=start, end=end, types=list(types or []))
    if not roles:
        scan.reason = "no services"
        return scan
    try:
        owner = owner or owner_of(client, roles)
        if owner is None:
            scan.reason = "the API names no owner for the services"
            return scan
        entries = client.list_logs(
            owner,
            list(roles),
            start=start,
            end=end,
            level=["error"],
            types=types or None,
            max_entries=MAX_ENTRIES,
        )
    except RenderApiError as exc:
        scan.reason = exc.message
        return scan
    secrets = list(known_secrets)
    scan.read = True
    scan.error_count = len(entries)
    scan.first = [
        f"{roles.get(e.resource or '', e.resource or '?')}: "
        + redact_line(e.message, known=secrets, max_length=LINE_LENGTH)
        for e in entries[:FIRST_LINES]
    ]
    return scan


def log_check(name: str, scan: LogScan) -> Check:
    """One checklist line: passes with no error line, fails naming the first ones, `n/a` when
    the logs could not be read (not a pass: nobody looked)."""
    what = "error-level lines of type " + ", ".join(scan.types) if scan.types else "error lines"
    return Check(
        name=name,
        passed=scan.error_count == 0 if scan.read else None,
        measured=scan.summary(),
        threshold=f"0 {what}",
    )
