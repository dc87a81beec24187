"""Resolve the deployment, its rules and the API the way every command does, then collect."""

from __future__ import annotations

import re
from datetime import timedelta

from koinonia_infra.errors import UsageError
from koinonia_infra.monitor.collect import collect_monitor
from koinonia_infra.monitor.model import MonitorReport
from koinonia_infra.settings import MonitorSettings, VerifySettings
from koinonia_infra.targets import DeploymentSource

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Render keeps metrics for a limited time; a window longer than a month is a typo.
MAX_WINDOW = timedelta(days=30)


def parse_since(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `1h30m`, `2d` → a window; refused in one line otherwise."""
    raw = text.strip().lower()
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(raw):
        if raw[pos : match.start()].strip():
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not raw or raw[pos:].strip() or seconds <= 0:
        raise UsageError(f"--since {text!r}: expected a duration like 15m, 1h or 1h30m")
    window = timedelta(seconds=seconds)
    if window < timedelta(minutes=1) or window > MAX_WINDOW:
        raise UsageError(f"--since {text!r}: choose a window from 1m to 30d")
    return window


def rules_for(where: DeploymentSource) -> tuple[MonitorSettings, VerifySettings]:
    """The runbook's defaults, then the stack file's `koinonia:monitor` and `koinonia:verify`
    when the deployment comes from a stack (as `verify` does); for the sandbox, the verify
    thresholds of the stack it runs (`sandbox up --stack`)."""
    settings = where.stack_settings
    if settings is not None:
        return settings.monitor, settings.verify
    sandbox = where.sandbox_stack()
    if sandbox is not None:
        return MonitorSettings(), sandbox.verify
    return MonitorSettings(), VerifySettings()


def run_monitor(where: DeploymentSource, since: timedelta) -> MonitorReport:
    monitor, verify = rules_for(where)
    descriptor = where.descriptor()
    with where.client(descriptor, required="monitor", retry_deadline=20.0) as client:
        return collect_monitor(
            descriptor,
            client,
            since=since,
            monitor=monitor,
            verify=verify,
            api_url=client.base_url,
        )
