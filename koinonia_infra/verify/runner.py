"""Runs the check plan: gathers the observations the checks need (HTTP, Render API), evaluates
them, and with `wait_seconds` re-observes the failing ones with backoff until all pass or the
deadline, keeping the last observation of each."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import RenderApiError
from koinonia_infra.measure.client import run_load
from koinonia_infra.measure.fetch import fetch_async, make_http_client
from koinonia_infra.measure.load import BurstResult, burst_async
from koinonia_infra.measure.poll import poll
from koinonia_infra.measure.rounds import StopRule
from koinonia_infra.measure.samples import latency_summary
from koinonia_infra.settings import EdgeSettings, VerifySettings
from koinonia_infra.verify.checks import (
    PARITY_KEYS,
    EnvSnapshot,
    Observations,
    PlannedCheck,
    ServiceState,
    evaluate,
    join_url,
    label,
    plan_checks,
    service_ids,
)
from koinonia_infra.verify.model import (
    DEFAULT_TIMEOUT_SECONDS,
    CheckResult,
    VerifyOptions,
    VerifyReport,
)
from koinonia_infra.verify.smoke import SANDBOX_SMOKE, build_log_check, run_smoke

if TYPE_CHECKING:
    from koinonia_infra.render_api import RenderClient
    from koinonia_infra.targets import DeploymentSource

Progress = Callable[[str], None]
NO_KEY = "no Render API key: set RENDER_API_KEY (or use --target sandbox)"
_BACKOFF_START = 0.5
_BACKOFF_MAX = 5.0


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def env_snapshot(env: dict[str, str]) -> EnvSnapshot:
    """Key names and fingerprints only: the values go no further than this function."""
    return EnvSnapshot(
        keys=frozenset(env),
        fingerprints={k: fingerprint(env[k]) for k in PARITY_KEYS if k in env},
    )


def stop_rule(options: VerifyOptions, planned: int) -> StopRule:
    """When the burst is clearly failing, so that it stops rather than waiting out every
    request (each one the edge holds for its retry window): once `window` = max(concurrency,
    10) requests have answered, stop as soon as (1) more of them have failed than the
    error-rate threshold allows for the whole burst, so that check can no longer pass, and
    (2) at least half of the last `window` failed, so the deployment is failing now and not
    after a glitch that passed."""
    allowed = options.max_error_rate_percent / 100.0 * planned
    window = min(max(options.concurrency, 10), planned)

    def rule(completed: int, failed: int, recent: Sequence[bool]) -> str | None:
        if completed < window or failed <= allowed:
            return None
        last = list(recent)[-window:]
        bad = last.count(False)
        if 2 * bad < len(last):
            return None
        return (
            f"after {completed} of {planned} requests: {failed} failed, {bad} of the last "
            f"{len(last)}, over the {options.max_error_rate_percent:g}% allowed"
        )

    return rule


async def _read_health(urls: list[str], options: VerifyOptions, obs: Observations) -> None:
    if not urls:
        return
    async with make_http_client(
        timeout=options.timeout_seconds, max_connections=max(len(urls), 1)
    ) as client:
        fetched = await asyncio.gather(
            *(
                fetch_async(
                    client,
                    u,
                    timeout=options.timeout_seconds,
                    max_body_bytes=options.max_body_bytes,
                )
                for u in urls
            )
        )
    obs.health.update({f.url: f for f in fetched})


def _instance_health_urls(descriptor: Descriptor, options: VerifyOptions) -> list[str]:
    return [join_url(i.url, options.health_path) for i in descriptor.instances]


async def _observe_http(
    checks: list[PlannedCheck],
    descriptor: Descriptor,
    options: VerifyOptions,
    obs: Observations,
    deadline: float,
) -> None:
    await _read_health(
        sorted({c.url for c in checks if c.probe == "health" and c.url}), options, obs
    )
    # Leave room after the burst for the health re-read, which names the cause.
    traffic_deadline = deadline - min(options.timeout_seconds, 5.0)
    edge = join_url(descriptor.edge_url, options.health_path)
    if any(c.probe == "burst" for c in checks):
        # After the health reads, not alongside them: the burst measures latency.
        warmup = 2 * options.concurrency
        obs.burst = await burst_async(
            edge,
            options.requests,
            options.concurrency,
            timeout=options.timeout_seconds,
            max_body_bytes=options.max_body_bytes,
            # Two rounds per connection: every client connection and the edge's connections to
            # each upstream are open before anything is timed.
            warmup=warmup,
            stop_when=stop_rule(options, options.requests + warmup),
            deadline=traffic_deadline,
        )
        if obs.burst.stopped is not None:
            # What broke during the burst is read now on every instance, whose /health names
            # the cause (the reads before the burst may predate the fault). Not the edge: with
            # no healthy upstream it answers only after its retry window, and says less.
            await _read_health(_instance_health_urls(descriptor, options), options, obs)
            obs.health_reread = True
            return
    if any(c.probe == "similarity" for c in checks):
        # Few requests in flight, interleaved over the instances by the edge's round robin:
        # what slows the machine down slows every instance alike, and no queue builds up.
        count = options.similarity_per_instance * len(descriptor.instances)
        warmup = 2 * options.similarity_concurrency
        obs.similarity = await burst_async(
            edge,
            count,
            options.similarity_concurrency,
            timeout=options.timeout_seconds,
            max_body_bytes=options.max_body_bytes,
            warmup=warmup,
            stop_when=stop_rule(options, count + warmup),
            deadline=traffic_deadline,
        )


def _observe_render(
    checks: list[PlannedCheck],
    descriptor: Descriptor,
    render: RenderClient,
    obs: Observations,
    deadline: float,
) -> None:
    by_number = {i.number: i for i in descriptor.instances}
    late = "not read: the verify deadline was reached"
    if any(c.id == "config-parity" for c in checks):
        for number, inst in by_number.items():
            if time.monotonic() >= deadline:
                obs.env[number] = late
                continue
            try:
                obs.env[number] = env_snapshot(render.env_vars(inst.service_id))
            except RenderApiError as exc:
                obs.env[number] = f"Render API: {exc.message}"
    ids = service_ids(descriptor)
    for check in checks:
        if check.id != "deploy-status":
            continue
        if time.monotonic() >= deadline:
            obs.services[check.target] = late
            continue
        service_id = ids[check.target]
        try:
            service = render.get_service(service_id)
            deploy = render.latest_deploy(service_id)
        except RenderApiError as exc:
            obs.services[check.target] = f"Render API: {exc.message}"
            continue
        obs.services[check.target] = ServiceState(
            suspended=str(service.suspended),
            deploy_status=deploy.status if deploy else None,
            deploy_id=deploy.id if deploy else None,
            commit=deploy.commit_id if deploy else None,
        )


def _observe(
    checks: list[PlannedCheck],
    descriptor: Descriptor,
    options: VerifyOptions,
    render: RenderClient | None,
    render_skip: str | None,
    *,
    deadline: float,
) -> Observations:
    obs = Observations(render_skip=render_skip)
    # On the load's own loop (uvloop where there is one): the burst is measured on it.
    run_load(_observe_http(checks, descriptor, options, obs, deadline))
    if render is not None and any(c.probe == "render" for c in checks):
        _observe_render(checks, descriptor, render, obs, deadline)
    return obs


def _traffic_summary(burst: BurstResult | None) -> dict[str, Any]:
    if burst is None:
        return {}
    return {
        "url": burst.url,
        "requests": len(burst.samples),
        "concurrency": burst.concurrency,
        "elapsedSeconds": round(burst.elapsed_s, 3),
        "requestsPerSecond": round(burst.requests_per_second, 1),
        "latency": latency_summary(burst.samples).as_dict(),
        "warmupRequests": burst.warmup_requests,
        "plannedRequests": burst.planned,
        "stoppedEarly": burst.stopped,
    }


def _deployment(descriptor: Descriptor, options: VerifyOptions) -> dict[str, Any]:
    return {
        "stack": descriptor.stack,
        "environment": options.environment or descriptor.environment,
        "edgeUrl": descriptor.edge_url,
        "instances": [
            {"target": label(i), "number": i.number, "name": i.name, "url": i.url}
            for i in descriptor.instances
        ],
    }


def _say_stopped(say: Progress, obs: Observations) -> None:
    if obs.burst is not None and obs.burst.stopped is not None:
        say(f"burst stopped early ({obs.burst.stopped}); read each instance's /health again")


def run_verify(
    descriptor: Descriptor,
    options: VerifyOptions,
    *,
    render: RenderClient | None = None,
    on_progress: Progress | None = None,
) -> VerifyReport:
    """Every check once; with `options.wait_seconds`, failing ones again until pass or deadline."""
    say = on_progress or (lambda _msg: None)
    t0 = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    deadline = t0 + options.wait_seconds
    budget = options.deadline(len(descriptor.instances))
    hard_deadline = t0 + budget
    plan = plan_checks(descriptor, options)

    owned: RenderClient | None = None
    render_skip: str | None = None
    if render is None:
        from koinonia_infra.render_api import RenderClient

        # A verify must not hang on a throttled API: short timeout, short retry window.
        owned = RenderClient.for_descriptor(descriptor, timeout=5.0, retry_deadline=10.0)
        render = owned
    if render is None:
        render_skip = NO_KEY

    try:
        say(f"checking {len(descriptor.instances)} instance(s) and the edge")
        results: dict[tuple[str, str], CheckResult] = {}
        traffic: dict[str, Any] = {}
        attempts = 0

        def failing() -> list[PlannedCheck]:
            return [c for c in plan if results[(c.id, c.target)].status == "fail"]

        def observe() -> list[PlannedCheck]:
            """Every check the first time; then only the failing ones, again. What still fails."""
            nonlocal traffic, attempts
            todo = failing() if attempts else plan
            attempts += 1
            obs = _observe(todo, descriptor, options, render, render_skip, deadline=hard_deadline)
            _say_stopped(say, obs)
            if attempts > 1 and obs.health_reread:
                # The instances' /health was read again after a failing burst: newer news.
                todo += [c for c in plan if c.id == "instance-health" and c not in todo]
            for check in todo:
                results[(check.id, check.target)] = evaluate(check, obs, descriptor, options)
            if attempts == 1 or obs.burst is not None:
                traffic = _traffic_summary(obs.burst)
            return failing()

        def retrying(still: list[PlannedCheck], pause: float) -> None:
            names = ", ".join(sorted({f"{c.id} {c.target}" for c in still})[:4])
            say(f"{len(still)} check(s) failing ({names}); retrying in {pause:.1f}s")

        poll(
            observe,
            lambda still: not still,
            deadline=min(deadline, hard_deadline),
            interval=_BACKOFF_START,
            backoff=2.0,
            max_interval=_BACKOFF_MAX,
            before_sleep=retrying,
        )
        # The runbook's functional checks and "no errors in build logs" (verify/smoke.py).
        extra = run_smoke(
            descriptor, options.smoke, options, until=min(deadline, hard_deadline), on_progress=say
        )
        if render is not None:
            extra.append(build_log_check(descriptor, render))
    finally:
        if owned is not None:
            owned.close()

    return VerifyReport(
        deployment=_deployment(descriptor, options),
        options=options,
        checks=[*(results[(c.id, c.target)] for c in plan), *extra],
        started_at=started_at,
        duration_seconds=time.monotonic() - t0,
        attempts=attempts,
        traffic=traffic,
        deadline_seconds=budget,
    )


def verify_deployment(
    source: DeploymentSource,
    *,
    overrides: dict[str, Any] | None = None,
    on_progress: Progress | None = None,
) -> VerifyReport:
    """Resolve the deployment and thresholds the way the CLI is documented to, then verify.

    Thresholds: `VerifySettings` defaults, then the stack file's `koinonia:verify` when the
    deployment comes from a stack (for the sandbox, the stack it runs), then the flags
    (`overrides`, None meaning "not given").
    """
    settings: VerifySettings | None = None
    flags = dict(overrides or {})
    edge: EdgeSettings | None = None
    sandbox = source.sandbox_stack()
    stack_settings = source.stack_settings
    if stack_settings is not None:
        settings, edge = stack_settings.verify, stack_settings.edge
    elif sandbox is not None:
        # The stack the sandbox runs (`sandbox up --stack`): its thresholds and edge.
        settings, edge = sandbox.verify, sandbox.edge
    if edge is not None and flags.get("timeout_seconds") is None:
        # Outlast the edge's retry window, so its own 503 is seen as such (model.py).
        flags["timeout_seconds"] = max(DEFAULT_TIMEOUT_SECONDS, edge.retry_window_seconds + 5.0)
    descriptor = source.descriptor()
    if sandbox is not None and flags.get("smoke") is None:
        # The sandbox's reference instance serves the two reference endpoints.
        flags["smoke"] = SANDBOX_SMOKE
    options = VerifyOptions.from_settings(
        settings, use_environment=source.from_stack is not None, **flags
    )
    # A verify must not hang on a throttled API: short timeout, short retry window.
    render = source.optional_client(descriptor, timeout=5.0, retry_deadline=10.0)
    try:
        return run_verify(descriptor, options, render=render, on_progress=on_progress)
    finally:
        if render is not None:
            render.close()
