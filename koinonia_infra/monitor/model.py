"""What `monitor` reports: per instance and the edge, per datastore, events, log errors, alerts.

JSON (`--format json`, camelCase, stable): {generatedAt, start, end, resolutionSeconds,
apiUrl, targets: [{role, name, serviceId, suspended, down, cpuPercent, cpuPeakPercent,
memoryMb, memoryPercent, requests, requestSharePercent, p50Ms, p95Ms, p99Ms, errorRatePercent,
cpuSeries, requestSeries, p95Series}], datastores: [{role, resourceId, cpuPercent, memoryMb,
connections, cpuSeries}], events: [{timestamp, role, type, detail}], logs: {errorCount,
first}, alerts: [{rule, target, measured, threshold, message}], warnings, fired}.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, computed_field

from koinonia_infra.ops.common import ReportModel

Points = list[float | None]


class TargetReport(ReportModel):
    """One web service: an API instance (`api-N`) or the edge."""

    role: str
    name: str
    service_id: str | None
    suspended: bool | None = None
    down: bool = False
    down_reason: str | None = None
    # CPU as a share of the plan's limit (Render's /metrics/cpu-limit), else of one CPU.
    cpu_percent: float | None = None  # mean over the window
    cpu_peak_percent: float | None = None  # the busiest interval of the window
    memory_mb: float | None = None
    memory_percent: float | None = None  # peak share of /metrics/memory-limit
    requests: int = 0
    request_share_percent: float | None = None  # of all the instances' requests
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate_percent: float | None = None  # 5xx ÷ requests
    cpu_series: Points = Field(default_factory=list)
    request_series: Points = Field(default_factory=list)
    p95_series: Points = Field(default_factory=list)


class DatastoreReport(ReportModel):
    role: str  # "postgres" or "key-value"
    resource_id: str
    cpu_percent: float | None = None
    memory_mb: float | None = None
    connections: float | None = None
    cpu_series: Points = Field(default_factory=list)


class EventRecord(ReportModel):
    timestamp: datetime
    role: str
    type: str
    detail: str = ""


class LogSummary(ReportModel):
    error_count: int = 0
    # The first few error-level lines, `role: message`, secrets redacted (monitor.redact).
    first: list[str] = Field(default_factory=list)
    read: bool = True  # False: the logs could not be read (see warnings)


class Alert(ReportModel):
    rule: str
    target: str
    measured: str
    threshold: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def message(self) -> str:
        return f"{self.rule} on {self.target}: {self.measured} (threshold {self.threshold})"


class MonitorReport(ReportModel):
    generated_at: datetime
    start: datetime
    end: datetime
    resolution_seconds: int
    api_url: str | None = None
    targets: list[TargetReport] = Field(default_factory=list)
    datastores: list[DatastoreReport] = Field(default_factory=list)
    events: list[EventRecord] = Field(default_factory=list)
    logs: LogSummary = Field(default_factory=LogSummary)
    alerts: list[Alert] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fired(self) -> bool:
        return bool(self.alerts)

    @property
    def instances(self) -> list[TargetReport]:
        return [t for t in self.targets if t.role.startswith("api-")]
