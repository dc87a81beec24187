"""The alert rules of `koinonia:monitor`, with the runbook's Step 8 defaults: CPU > 80 %, error
rate > 1 %, p95 > the verify threshold, any instance down or suspended, the split off 50/50 by
more than the verify tolerance, memory > 90 % of the plan. Each fired rule names the rule, the
target, the measured value and the threshold."""

from __future__ import annotations

from koinonia_infra.monitor.model import Alert, MonitorReport
from koinonia_infra.settings import MonitorSettings, VerifySettings


def evaluate(
    report: MonitorReport, monitor: MonitorSettings, verify: VerifySettings
) -> list[Alert]:
    alerts: list[Alert] = []
    p95_limit = monitor.p95_ms if monitor.p95_ms is not None else verify.p95_ms
    tolerance = (
        monitor.share_tolerance_points
        if monitor.share_tolerance_points is not None
        else verify.share_tolerance_points
    )
    for t in report.targets:
        who = f"{t.role} ({t.name})"
        if t.down:
            # The edge down is every instance unreachable: as much an alert as one instance.
            alerts.append(
                Alert(
                    rule="instance down" if t.role.startswith("api-") else "edge down",
                    target=who,
                    measured=t.down_reason or "down",
                    threshold="running",
                )
            )
        if t.cpu_peak_percent is not None and t.cpu_peak_percent > monitor.cpu_percent:
            alerts.append(
                Alert(
                    rule="cpu",
                    target=who,
                    measured=f"{t.cpu_peak_percent:.0f} %",
                    threshold=f"{monitor.cpu_percent:g} %",
                )
            )
        if t.memory_percent is not None and t.memory_percent > monitor.memory_percent:
            alerts.append(
                Alert(
                    rule="memory",
                    target=who,
                    measured=f"{t.memory_percent:.0f} % of the plan",
                    threshold=f"{monitor.memory_percent:g} %",
                )
            )
        if t.error_rate_percent is not None and t.error_rate_percent > monitor.error_rate_percent:
            alerts.append(
                Alert(
                    rule="error rate",
                    target=who,
                    measured=f"{t.error_rate_percent:.2f} % 5xx of {t.requests} requests",
                    threshold=f"{monitor.error_rate_percent:g} %",
                )
            )
        if t.p95_ms is not None and t.p95_ms > p95_limit:
            alerts.append(
                Alert(
                    rule="p95 latency",
                    target=who,
                    measured=f"{t.p95_ms:.0f} ms",
                    threshold=f"{p95_limit:g} ms",
                )
            )
    instances = [t for t in report.instances if not t.down]
    total = sum(t.requests for t in instances)
    if len(instances) > 1 and total >= monitor.min_requests_for_split:
        fair = 100.0 / len(instances)
        for t in instances:
            share = t.requests / total * 100
            if abs(share - fair) > tolerance:
                alerts.append(
                    Alert(
                        rule="split",
                        target=f"{t.role} ({t.name})",
                        measured=f"{share:.1f} % of {total} requests",
                        threshold=f"{fair:.1f} ± {tolerance:g} points",
                    )
                )
    return alerts
