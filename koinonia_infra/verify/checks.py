"""The checks as pure functions: a plan (what to observe, per check) and an evaluation (from
observations to a pass/fail with the measured value and the threshold). No I/O here.

    id                  target        observes
    instance-health     api-N         GET <instance url><health path>
    edge-health         edge          GET <edge url><health path>
    distribution        edge          the burst through the edge
    latency             all | api-N   the burst through the edge
    latency-similarity  all           its own interleaved sample through the edge, after the burst
    error-rate          edge          the burst through the edge
    config-parity       all           Render API env vars of every instance
    deploy-status       api-N | edge  Render API service + latest deploy
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from koinonia_infra.descriptor import Descriptor, InstanceRef
from koinonia_infra.measure.attribution import Attributor
from koinonia_infra.measure.fetch import Fetched
from koinonia_infra.measure.load import BurstResult
from koinonia_infra.measure.samples import (
    Sample,
    answered_latencies,
    latency_summary,
    percentile,
)
from koinonia_infra.verify.model import CheckResult, VerifyOptions

Probe = Literal["health", "burst", "similarity", "render"]
PARITY_KEYS = ("DATABASE_URL", "REDIS_URL", "NODE_ENV")
# What the edge itself answers when it gives up, without an upstream's header: Caddy's reverse
# proxy answers 503 when no upstream is available within lb_try_duration, 502 for a failed
# proxy attempt and 504 for a timed-out one (caddyserver/caddy v2.6.2
# modules/caddyhttp/reverseproxy/reverseproxy.go: proxyLoopIteration and statusError).
EDGE_OWN_ANSWERS = {
    502: "could not reach an upstream",
    503: "no healthy upstream",
    504: "upstream timed out",
}
# The two-sided confidence of the bounds the similarity check compares (docs/verify.md).
SIMILARITY_CONFIDENCE = 0.95


@dataclass(frozen=True)
class PlannedCheck:
    id: str
    name: str
    target: str
    probe: Probe
    threshold: str
    url: str | None = None
    instance: int | None = None


@dataclass(frozen=True)
class EnvSnapshot:
    """An instance's env: key names and SHA-256 fingerprints of the parity keys, never values."""

    keys: frozenset[str]
    fingerprints: dict[str, str]


@dataclass(frozen=True)
class ServiceState:
    suspended: str
    deploy_status: str | None
    deploy_id: str | None
    commit: str | None


@dataclass
class Observations:
    health: dict[str, Fetched] = field(default_factory=dict)
    burst: BurstResult | None = None
    similarity: BurstResult | None = None
    # Set when the health reads were repeated after a burst that stopped early.
    health_reread: bool = False
    render_skip: str | None = None
    env: dict[int, EnvSnapshot | str] = field(default_factory=dict)
    services: dict[str, ServiceState | str] = field(default_factory=dict)


def label(inst: InstanceRef) -> str:
    return f"api-{inst.number}"


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def expected_environment(descriptor: Descriptor, options: VerifyOptions) -> str:
    return options.environment or descriptor.environment


# ------------------------------------------------------------------------------------------------
# Plan
# ------------------------------------------------------------------------------------------------


def plan_checks(descriptor: Descriptor, options: VerifyOptions) -> list[PlannedCheck]:
    env = expected_environment(descriptor, options)
    health_threshold = f"200, status ok, database+redis connected, environment {env}"
    plan: list[PlannedCheck] = []
    for inst in descriptor.instances:
        plan.append(
            PlannedCheck(
                id="instance-health",
                name="Instance health",
                target=label(inst),
                probe="health",
                threshold=health_threshold,
                url=join_url(inst.url, options.health_path),
                instance=inst.number,
            )
        )
    edge_health = join_url(descriptor.edge_url, options.health_path)
    plan.append(
        PlannedCheck(
            id="edge-health",
            name="Edge health",
            target="edge",
            probe="health",
            threshold=health_threshold,
            url=edge_health,
        )
    )
    n = len(descriptor.instances)
    plan.append(
        PlannedCheck(
            id="distribution",
            name="Load distribution",
            target="edge",
            probe="burst",
            threshold=(
                f"each of {n} instance(s) {100 / n:.1f}% ± {options.share_tolerance_points:g} "
                "points, no undeclared upstream"
            ),
            url=edge_health,
        )
    )
    p95 = f"p95 ≤ {options.p95_ms:g} ms"
    plan.append(
        PlannedCheck(id="latency", name="Latency", target="all", probe="burst", threshold=p95)
    )
    for inst in descriptor.instances:
        plan.append(
            PlannedCheck(
                id="latency",
                name="Latency",
                target=label(inst),
                probe="burst",
                threshold=p95,
                instance=inst.number,
            )
        )
    if n > 1:
        plan.append(
            PlannedCheck(
                id="latency-similarity",
                name="Latency similar on all instances",
                target="all",
                probe="similarity",
                threshold=(
                    f"slowest p50 ÷ fastest p50 ≤ {options.p50_ratio:g} beyond doubt "
                    f"({SIMILARITY_CONFIDENCE:.0%} bounds; under {options.p50_floor_ms:g} ms "
                    f"counts as {options.p50_floor_ms:g})"
                ),
            )
        )
    plan.append(
        PlannedCheck(
            id="error-rate",
            name="Error rate",
            target="edge",
            probe="burst",
            threshold=f"≤ {options.max_error_rate_percent:g}%",
        )
    )
    plan.append(
        PlannedCheck(
            id="config-parity",
            name="Config parity",
            target="all",
            probe="render",
            threshold="same env keys; same SHA-256 of " + ", ".join(PARITY_KEYS),
        )
    )
    for inst in descriptor.instances:
        plan.append(
            PlannedCheck(
                id="deploy-status",
                name="Deploy status",
                target=label(inst),
                probe="render",
                threshold="latest deploy live, not suspended",
                instance=inst.number,
            )
        )
    if descriptor.edge is not None and descriptor.edge.service_id:
        plan.append(
            PlannedCheck(
                id="deploy-status",
                name="Deploy status",
                target="edge",
                probe="render",
                threshold="latest deploy live, not suspended",
            )
        )
    return plan


def service_ids(descriptor: Descriptor) -> dict[str, str]:
    """Check target -> Render service id, for the deploy-status checks."""
    ids = {label(i): i.service_id for i in descriptor.instances}
    if descriptor.edge is not None and descriptor.edge.service_id:
        ids["edge"] = descriptor.edge.service_id
    return ids


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


def evaluate(
    check: PlannedCheck, obs: Observations, descriptor: Descriptor, options: VerifyOptions
) -> CheckResult:
    if check.probe == "health":
        return _health(check, obs, descriptor, options)
    if check.probe == "similarity":
        if obs.similarity is None:
            if obs.burst is not None and obs.burst.stopped is not None:
                reason = "not measured: the burst through the edge stopped early"
                return _result(check, "skip", "not measured", reason)
            return _result(check, "fail", "not measured", "no traffic was sent")
        return _similarity(check, obs.similarity, descriptor, options)
    if check.probe == "burst":
        if obs.burst is None:
            return _result(check, "fail", "not measured", "no traffic was sent")
        if check.id == "distribution":
            return _distribution(check, obs.burst, descriptor, options)
        if check.id == "latency":
            return _latency(check, obs.burst, descriptor, options)
        return _error_rate(check, obs, obs.burst, descriptor, options)
    if obs.render_skip is not None:
        return _result(check, "skip", "not observed", obs.render_skip)
    if check.id == "config-parity":
        return _parity(check, obs, descriptor)
    return _deploy(check, obs)


def _result(
    check: PlannedCheck,
    status: Literal["pass", "fail", "skip"],
    measured: str,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
) -> CheckResult:
    return CheckResult(
        id=check.id,
        name=check.name,
        target=check.target,
        status=status,
        measured=measured,
        threshold=check.threshold,
        reason=reason,
        values=values or {},
    )


def _health(
    check: PlannedCheck, obs: Observations, descriptor: Descriptor, options: VerifyOptions
) -> CheckResult:
    fetched = obs.health.get(check.url or "")
    if fetched is None:
        return _result(check, "fail", "not measured", "no health observation")
    s = fetched.sample
    values: dict[str, Any] = {
        "url": fetched.url,
        "httpStatus": s.status,
        "latencyMs": round(s.latency_ms, 2),
    }
    if s.error is not None:
        return _result(check, "fail", s.error, s.error, values)
    if check.target == "edge" and not s.upstream and s.status in EDGE_OWN_ANSWERS:
        # The edge's own answer after its retry window: its body says nothing more.
        reason = edge_answer(s.status)
        return _result(check, "fail", f"HTTP {s.status} from the edge", reason, values)
    data, problem = fetched.json()
    if problem is not None:
        reason = problem if s.status == 200 else f"HTTP {s.status}: {problem}"
        return _result(check, "fail", f"HTTP {s.status}, unreadable body", reason, values)
    if not isinstance(data, dict):
        reason = f"HTTP {s.status}: body is JSON but not an object ({type(data).__name__})"
        return _result(check, "fail", f"HTTP {s.status}, wrong shape", reason, values)
    fields = {k: data.get(k) for k in ("status", "database", "redis", "environment", "instance")}
    values.update({k: v for k, v in fields.items() if isinstance(v, str | int | float | bool)})
    status = fields["status"]
    measured = (
        f"HTTP {s.status} {status if isinstance(status, str) else '?'}, {s.latency_ms:.0f} ms"
    )
    missing = [k for k in ("status", "database", "redis") if not isinstance(fields[k], str)]
    if missing:
        reason = f"HTTP {s.status}: body lacks {', '.join(missing)} (wrong shape)"
        return _result(check, "fail", measured, reason, values)
    # A degraded body says "ok" for what works and "down" for what does not (the /health
    # contract, docs/sandbox.md "The reference API instance").
    down = [k for k in ("database", "redis") if fields[k] not in ("connected", "ok")]
    problems: list[str] = []
    if down:
        problems.append(", ".join(f"{k} {_short(fields[k])}" for k in down))
    if status != "ok":
        problems.insert(0, f"status {_short(status)}")
    if s.status != 200:
        problems.insert(0, f"HTTP {s.status}")
    env = expected_environment(descriptor, options)
    if (status == "ok" or fields["environment"] is not None) and fields["environment"] != env:
        problems.append(f"environment {_short(fields['environment'])} (expected {env})")
    if problems:
        return _result(check, "fail", measured, "; ".join(problems), values)
    return _result(check, "pass", measured, None, values)


def _short(value: Any) -> str:
    text = "missing" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:39] + "…"


def _attribute(
    burst: BurstResult, descriptor: Descriptor
) -> tuple[Counter[int], Counter[str], int]:
    """OK samples per declared instance, per undeclared upstream label, and unattributed."""
    per: Counter[int] = Counter()
    foreign: Counter[str] = Counter()
    unattributed = 0
    attribution = Attributor(descriptor)
    for s in burst.samples:
        if not s.ok:
            continue
        inst = attribution.instance(s.upstream)
        if inst is not None:
            per[inst.number] += 1
        elif s.upstream:
            foreign[s.upstream] += 1
        else:
            unattributed += 1
    return per, foreign, unattributed


def _distribution(
    check: PlannedCheck, burst: BurstResult, descriptor: Descriptor, options: VerifyOptions
) -> CheckResult:
    per, foreign, unattributed = _attribute(burst, descriptor)
    answered = sum(per.values()) + sum(foreign.values()) + unattributed
    n = len(descriptor.instances)
    expected = 100.0 / n
    shares = {
        label(i): (100.0 * per[i.number] / answered if answered else 0.0)
        for i in descriptor.instances
    }
    values: dict[str, Any] = {
        "requests": len(burst.samples),
        "answered": answered,
        "counts": {label(i): per[i.number] for i in descriptor.instances},
        "sharesPercent": {k: round(v, 2) for k, v in shares.items()},
        "undeclared": dict(foreign),
        "unattributed": unattributed,
    }
    measured = " · ".join(f"{k} {v:.1f}%" for k, v in shares.items())
    if answered == 0:
        return _result(check, "fail", "no answers", "no request through the edge succeeded", values)
    problems: list[str] = []
    answering = [i for i in descriptor.instances if per[i.number] > 0]
    silent = [i for i in descriptor.instances if per[i.number] == 0]
    if silent and answering and len(answering) < n:
        who = ", ".join(label(i) for i in answering)
        problems.append(
            f"only {who} answered ({sum(per.values())} of {answered}); "
            + ", ".join(f"{label(i)} got 0" for i in silent)
        )
    elif silent:
        problems.append("no declared instance answered")
    else:
        off = [
            f"{k} {v:.1f}%"
            for k, v in shares.items()
            if abs(v - expected) > options.share_tolerance_points
        ]
        if off:
            problems.append(
                f"outside {expected:.1f}% ± {options.share_tolerance_points:g}: {', '.join(off)}"
            )
    if foreign:
        labels = ", ".join(f"{k} ({v})" for k, v in foreign.most_common(3))
        problems.append(f"answers from undeclared upstream(s): {labels}")
    if unattributed:
        problems.append(f"{unattributed} answer(s) without an upstream header or body instance")
    if problems:
        return _result(check, "fail", measured, "; ".join(problems), values)
    return _result(check, "pass", measured, None, values)


def _samples_for(burst: BurstResult, descriptor: Descriptor, number: int | None) -> list[Sample]:
    if number is None:
        return burst.samples
    attribute = Attributor(descriptor)
    return [s for s in burst.samples if attribute(s) == number]


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _latency(
    check: PlannedCheck, burst: BurstResult, descriptor: Descriptor, options: VerifyOptions
) -> CheckResult:
    summary = latency_summary(_samples_for(burst, descriptor, check.instance))
    values = summary.as_dict()
    measured = (
        f"p50 {_fmt_ms(summary.p50_ms)} · p95 {_fmt_ms(summary.p95_ms)} · "
        f"p99 {_fmt_ms(summary.p99_ms)} ms (n={summary.count})"
    )
    if summary.p95_ms is None:
        return _result(check, "fail", "no answers", f"{check.target} answered no request", values)
    if summary.p95_ms > options.p95_ms:
        reason = f"p95 {summary.p95_ms:.1f} ms > {options.p95_ms:g} ms"
        return _result(check, "fail", measured, reason, values)
    return _result(check, "pass", measured, None, values)


def median_bounds(
    values: Sequence[float], confidence: float = SIMILARITY_CONFIDENCE
) -> tuple[float, float]:
    """Distribution-free confidence bounds of the median: order statistics x(k) and x(n+1-k),
    with k the largest rank such that P(Binomial(n, 1/2) < k) ≤ (1 - confidence) / 2. No
    assumption on the latency distribution, which is skewed and often bimodal."""
    ordered = sorted(values)
    n = len(ordered)
    tail = (1.0 - confidence) / 2.0
    total = 2**n
    k, cumulative = 0, 0
    while k < n // 2:
        cumulative += math.comb(n, k)  # P(B <= k) after this line, times 2**n
        if cumulative / total > tail:
            break
        k += 1
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[n - k]


def _similarity(
    check: PlannedCheck, sample: BurstResult, descriptor: Descriptor, options: VerifyOptions
) -> CheckResult:
    latencies = {
        label(i): answered_latencies(_samples_for(sample, descriptor, i.number))
        for i in descriptor.instances
    }
    p50s = {k: percentile(v, 50) for k, v in latencies.items()}
    failed = sum(1 for s in sample.samples if not s.ok) + sample.warmup_failures
    values: dict[str, Any] = {
        "p50Ms": {k: None if v is None else round(v, 2) for k, v in p50s.items()},
        "samples": {k: len(v) for k, v in latencies.items()},
        "requests": len(sample.samples),
        "concurrency": sample.concurrency,
        "failed": failed,
    }
    measured = " · ".join(f"{k} p50 {_fmt_ms(v)} ms" for k, v in p50s.items())
    missing = [k for k, v in latencies.items() if not v]
    if missing:
        reason = f"cannot compare: no answers from {', '.join(missing)}"
        return _result(check, "fail", measured, reason, values)
    few = {k: len(v) for k, v in latencies.items() if len(v) < options.similarity_min_samples}
    if few:
        counts = ", ".join(f"{k} {n}" for k, n in few.items())
        reason = (
            f"too few answers to compare ({counts}; {options.similarity_min_samples} needed "
            "per instance)"
        )
        return _result(check, "skip", measured, reason, values)
    floor = max(options.p50_floor_ms, 1e-6)
    known = {k: max(v or 0.0, floor) for k, v in p50s.items()}
    slow = max(known, key=lambda k: known[k])
    fast = min(known, key=lambda k: known[k])
    ratio = known[slow] / known[fast]
    # The margin: the slow instance's median at its lower bound against the fast one's at its
    # upper bound, so sampling noise never makes the difference.
    slow_low = max(median_bounds(latencies[slow])[0], floor)
    fast_high = max(median_bounds(latencies[fast])[1], floor)
    bound = slow_low / fast_high
    values["ratio"] = round(ratio, 3)
    values["ratioLowerBound"] = round(bound, 3)
    measured += f" (ratio {ratio:.2f}, at least {bound:.2f})"
    if bound > options.p50_ratio:
        reason = (
            f"{slow} p50 is {ratio:.2f} times {fast}'s, at least {bound:.2f} with "
            f"{SIMILARITY_CONFIDENCE:.0%} confidence (max {options.p50_ratio:g})"
        )
        return _result(check, "fail", measured, reason, values)
    return _result(check, "pass", measured, None, values)


def edge_answer(status: int | None) -> str:
    return f"edge answered {status} ({EDGE_OWN_ANSWERS.get(status or 0, 'its own error')})"


def failure_reason(sample: Sample, descriptor: Descriptor) -> str:
    """What happened to one failed request, in the words a user needs: the client's own error,
    the edge giving up (no upstream header), or an instance's answer."""
    if sample.error is not None:
        return sample.error
    if not sample.upstream and sample.status in EDGE_OWN_ANSWERS:
        return edge_answer(sample.status)
    inst = Attributor(descriptor).instance(sample.upstream)
    if inst is not None:
        return f"HTTP {sample.status} from {label(inst)}"
    return f"HTTP {sample.status}"


def instance_causes(obs: Observations, descriptor: Descriptor, options: VerifyOptions) -> str:
    """Each failing instance's health problem ("api-1 redis down"), from the health reads."""
    causes: list[str] = []
    for inst in descriptor.instances:
        fetched = obs.health.get(join_url(inst.url, options.health_path))
        if fetched is None:
            continue
        check = PlannedCheck("instance-health", "", label(inst), "health", "", fetched.url)
        result = _health(check, obs, descriptor, options)
        if result.status == "fail" and result.reason:
            causes.append(f"{label(inst)} {_cause(result.reason)}")
    return "; ".join(causes)


def _cause(reason: str) -> str:
    # "HTTP 503; status degraded; redis down" -> "redis down": the part that names a cause.
    parts = [p for p in reason.split("; ") if not p.startswith(("HTTP ", "status "))]
    return ", ".join(parts) if parts else reason


def _error_rate(
    check: PlannedCheck,
    obs: Observations,
    burst: BurstResult,
    descriptor: Descriptor,
    options: VerifyOptions,
) -> CheckResult:
    # Warm-up requests are left out of the latency, not out of the errors.
    total = len(burst.samples) + burst.warmup_requests
    failed = [s for s in burst.samples if not s.ok]
    n_failed = len(failed) + burst.warmup_failures
    rate = 100.0 * n_failed / total if total else 100.0
    values: dict[str, Any] = {
        "requests": total,
        "failed": n_failed,
        "ratePercent": round(rate, 3),
    }
    measured = f"{rate:.2f}% ({n_failed} of {total})"
    reasons = Counter(failure_reason(s, descriptor) for s in (*burst.warmup_failed, *failed))
    if reasons:
        values["reasons"] = dict(reasons.most_common(5))
    if burst.stopped is not None:
        values["stoppedEarly"] = burst.stopped
        measured += f", stopped after {total} of {burst.planned}"
    if rate > options.max_error_rate_percent or burst.stopped is not None:
        top = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(2))
        parts = [f"{n_failed} failed: {top}" if n_failed else "no request failed"]
        if burst.stopped is not None:
            parts.append(f"burst stopped early ({burst.stopped})")
        causes = instance_causes(obs, descriptor, options)
        if causes:
            parts.append(f"instances: {causes}")
        return _result(check, "fail", measured, "; ".join(parts), values)
    return _result(check, "pass", measured, None, values)


def _parity(check: PlannedCheck, obs: Observations, descriptor: Descriptor) -> CheckResult:
    snapshots: dict[str, EnvSnapshot] = {}
    errors: list[str] = []
    for inst in descriptor.instances:
        snap = obs.env.get(inst.number)
        if isinstance(snap, EnvSnapshot):
            snapshots[label(inst)] = snap
        else:
            errors.append(f"{label(inst)}: {snap or 'env vars not read'}")
    values: dict[str, Any] = {
        "keyCounts": {k: len(v.keys) for k, v in snapshots.items()},
        # 12 hex digits identify a difference without offering the whole digest of a secret.
        "fingerprints": {
            k: {key: v.fingerprints.get(key, "")[:12] or None for key in PARITY_KEYS}
            for k, v in snapshots.items()
        },
    }
    if errors:
        return _result(check, "fail", "not read", "; ".join(errors), values)
    all_keys = frozenset().union(*(s.keys for s in snapshots.values()))
    problems: list[str] = []
    for name, snap in snapshots.items():
        lacking = sorted(all_keys - snap.keys)
        if lacking:
            problems.append(
                f"{name} lacks {', '.join(lacking[:5])}{'…' if len(lacking) > 5 else ''}"
            )
    for key in PARITY_KEYS:
        prints = {name: snap.fingerprints.get(key) for name, snap in snapshots.items()}
        distinct = set(prints.values())
        if len(distinct) > 1:
            groups: dict[str | None, list[str]] = {}
            for name, fp in prints.items():
                groups.setdefault(fp, []).append(name)
            parts = [
                f"{'/'.join(names)} {'unset' if fp is None else fp[:8]}"
                for fp, names in groups.items()
            ]
            problems.append(f"{key} differs ({' vs '.join(parts)})")
    first = next(iter(snapshots.values()))
    measured = f"{len(snapshots)} instance(s), {len(first.keys)} keys"
    if problems:
        return _result(check, "fail", measured + ", mismatch", "; ".join(problems), values)
    return _result(check, "pass", measured + ", fingerprints match", None, values)


def _deploy(check: PlannedCheck, obs: Observations) -> CheckResult:
    state = obs.services.get(check.target)
    if not isinstance(state, ServiceState):
        reason = state or "service not read"
        return _result(check, "fail", "not read", reason)
    values: dict[str, Any] = {
        "suspended": state.suspended,
        "deployStatus": state.deploy_status,
        "deployId": state.deploy_id,
        "commit": state.commit,
    }
    commit = f", commit {state.commit[:7]}" if state.commit else ""
    measured = f"{state.deploy_status or 'no deploy'}{commit}, {state.suspended}"
    problems = []
    if state.deploy_status != "live":
        problems.append(f"latest deploy {state.deploy_status or 'missing'} (expected live)")
    if state.suspended != "not_suspended":
        problems.append(f"service is {state.suspended}")
    if problems:
        return _result(check, "fail", measured, "; ".join(problems), values)
    return _result(check, "pass", measured, None, values)
