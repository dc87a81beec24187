"""The Markdown sign-off: the runbook's checklist and success criteria, ticked from measurements.

A box is ticked only by a passing measurement; what this tool cannot observe stays a manual item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from koinonia_infra.textsafe import md

if TYPE_CHECKING:
    from koinonia_infra.verify.model import CheckResult, VerifyReport

# (runbook item, check ids that prove it)
_CHECKLIST: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Every instance answers /health: 200, database and Redis connected", ("instance-health",)),
    ("The public entry point (edge) answers /health", ("edge-health",)),
    ("Traffic through the edge reaches every instance (even split)", ("distribution",)),
    ("No answers from servers outside the deployment", ("distribution",)),
    (
        "Same configuration on every instance (env keys, database, cache, NODE_ENV)",
        ("config-parity",),
    ),
    ("Latest deploy live on every service, none suspended", ("deploy-status",)),
    ("No errors in build logs", ("build-logs",)),
)
_CRITERIA: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Load split within tolerance across instances", ("distribution",)),
    ("p95 latency within threshold, overall and per instance", ("latency",)),
    ("Latency similar on all instances", ("latency-similarity",)),
    ("Error rate through the edge within threshold", ("error-rate",)),
)
_MANUAL = (
    "CPU and memory of each instance in the Render dashboard (Metrics) stay within normal range",
    "Failover: one instance suspended, the service keeps answering "
    "(`koinonia-infra drill failover`)",
    "Zero-downtime deploy: instances redeployed one at a time (`koinonia-infra rollout`)",
    "Logs of every instance free of new errors since the change",
)


def _cell(text: str | None) -> str:
    # Names, URLs and reasons come from the descriptor and the answers of the deployment: a
    # newline or Markdown in them must not add a ticked box or a "PASSED" line (textsafe.md).
    return md(text or "")


def _tick(checks: list[CheckResult], ids: tuple[str, ...]) -> tuple[str, str]:
    relevant = [c for c in checks if c.id in ids]
    if not relevant:
        return "[ ]", "not measured"
    if any(c.status == "fail" for c in relevant):
        bad = next(c for c in relevant if c.status == "fail")
        return "[ ]", f"FAILED: {md(bad.target)}: {md(bad.reason or bad.measured)}"
    skipped = next((c for c in relevant if c.status == "skip"), None)
    if skipped is not None:
        return "[ ]", f"not checked: {md(skipped.reason)}"
    return "[x]", "; ".join(f"{md(c.target)}: {md(c.measured)}" for c in relevant)


def render_markdown(report: VerifyReport) -> str:
    d = report.deployment
    verdict = "PASSED" if report.passed else "FAILED"
    lines = [
        f"# Deployment sign-off: {md(d.get('stack') or d.get('edgeUrl'))}",
        "",
        f"- Result: **{verdict}** "
        f"({sum(c.status == 'pass' for c in report.checks)} passed, "
        f"{len(report.failed)} failed, {sum(c.status == 'skip' for c in report.checks)} skipped)",
        f"- Verified at: {md(report.started_at)} ({report.duration_seconds:.1f} s, "
        f"{report.attempts} attempt(s))",
        f"- Edge: {md(d.get('edgeUrl'))}",
        f"- Environment: {md(d.get('environment'))}",
        "- Instances: "
        + ", ".join(f"{md(i['target'])} ({md(i['name'])})" for i in d.get("instances", [])),
    ]
    if report.traffic:
        t = report.traffic
        lat = t.get("latency", {})
        lines.append(
            f"- Traffic: {md(t.get('requests'))} requests at concurrency "
            f"{md(t.get('concurrency'))}, {md(t.get('requestsPerSecond'))} req/s; "
            f"p50 {md(lat.get('p50Ms'))} ms, p95 {md(lat.get('p95Ms'))} ms, "
            f"p99 {md(lat.get('p99Ms'))} ms"
        )
    lines += ["", "## Sign-off checklist", ""]
    for text, ids in _CHECKLIST:
        box, evidence = _tick(report.checks, ids)
        lines.append(f"- {box} {text} — {evidence}")
    smoke = [c for c in report.checks if c.id == "smoke"]
    if smoke:
        # The runbook's "API endpoints work / database queries work / Redis cache accessible
        # from both": one line per declared check and target (koinonia:verify.smoke).
        lines += ["", "## Functional checks (every instance and the edge)", ""]
        for c in smoke:
            box, evidence = _tick([c], ("smoke",))
            lines.append(f"- {box} {_cell(c.name)} on {_cell(c.target)} "
                         f"({_cell(c.threshold)}) — {evidence}")  # fmt: skip
    lines += ["", "## Success criteria", ""]
    for text, ids in _CRITERIA:
        box, evidence = _tick(report.checks, ids)
        lines.append(f"- {box} {text} — {evidence}")
    lines += ["", "## Manual (not observable by this tool)", ""]
    lines += [f"- [ ] {text}" for text in _MANUAL]
    lines += [
        "",
        "## Measurements",
        "",
        "| Check | Target | Result | Measured | Threshold | Reason |",
        "|---|---|---|---|---|---|",
    ]
    for c in report.checks:
        lines.append(
            f"| {_cell(c.name)} | {_cell(c.target)} | {c.status.upper()} | {_cell(c.measured)} "
            f"| {_cell(c.threshold)} | {_cell(c.reason)} |"
        )
    lines += ["", "Signed off by: ____________________  Date: ____________", ""]
    return "\n".join(lines)
