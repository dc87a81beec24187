"""How long `drill failover` and `rollout` wait for each event, chosen by the target.

A real deployment follows Render's timings; the sandbox follows its own profile
(`koinonia_infra/sandbox/timing.py`: `fast`, or `render` = Render's sequence with scaled delays).
The events waited on, and what Render's own sources say about each:

- suspend: `POST /services/{id}/suspend` answers 202 and takes effect later (the OpenAPI reference
  vendored in cloudy-sky-software/pulumi-render, provider/cmd/pulumi-gen-render/openapi.yml,
  `suspend-service`: only a 202 "Service suspended successfully", no body). So the tool polls
  `GET /services/{id}` until `suspended == "suspended"` instead of reading it right after the call.
- resume: `POST /services/{id}/resume` answers 202 too (`resume-service`, same file), and the
  resume is a deploy: `deploy.trigger` has the value `service_resumed` (same file,
  components.schemas.deploy.trigger). It builds and boots like any deploy, health-gated. The tool
  waits for that deploy to be listed (render-oss/cli pkg/tui/views/deploycreate.go,
  `WaitForDeployCreate`, gives a queued deploy one minute to appear), then for it to be `live`.
- deploy: Render cancels a deploy whose new instance fails its health checks for 15 consecutive
  minutes (https://render.com/docs/health-checks), after a build of its own; render-oss/cli
  waits up to an hour (`deployTimeout`) and polls every 5 s once a deploy has started
  (`WaitForDeploy`, same file).
- zero-downtime switch: "After 60 seconds, send SIGTERM to the old instance. If the old instance
  doesn't exit within the shutdown delay, send SIGKILL"
  (https://render.com/articles/how-render-handles-zero-downtime-deploys); the shutdown delay is
  the service's `maxShutdownDelaySeconds`, 1-300, default 30 (OpenAPI, same file). A rollout holds
  each instance through that window before touching the next one, so two instances are never in
  a switch at once.
- API polling stays well inside Render's rate limits (GETs are shared per user, 100-400 a minute,
  https://api-docs.render.com/reference/rate-limiting).

Deadlines are upper bounds, never expectations: the measured times are what the reports show.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.settings import EdgeSettings, OpsSettings, Settings

if TYPE_CHECKING:
    from koinonia_infra.targets import DeploymentSource

# Render's own numbers, each from the sources in the module docstring.
RENDER_DEPLOY_APPEAR_SECONDS = 60.0  # render-oss/cli deployCreateTimeout
RENDER_POLL_SECONDS = 5.0  # render-oss/cli WaitForDeploy, once a deploy has started
RENDER_OVERLAP_SECONDS = 60.0  # old instance kept 60 s after the switch
RENDER_HEALTH_GATE_SECONDS = 900.0  # 15 minutes of failed health checks cancel a deploy
RENDER_BUILD_BOUND_SECONDS = 900.0  # a build bound of ours: Render's build time is the repo's
# Render documents no duration for a suspend to take effect: a bound of ours, generous.
RENDER_SUSPEND_BOUND_SECONDS = 120.0
# After `live`, the instance already passed Render's health gate; its public URL and the edge's
# private address follow within seconds. A bound of ours.
RENDER_HEALTHY_BOUND_SECONDS = 120.0
# The sandbox shares a small machine with other work: its deadlines get room, never its delays.
SANDBOX_SLACK_FACTOR = 3.0
SANDBOX_SLACK_SECONDS = 5.0


@dataclass(frozen=True)
class OpsTiming:
    """Deadlines (seconds) for each event an operation waits on, and where they came from."""

    target: str  # "render" or "sandbox (fast)" / "sandbox (render)"
    poll_interval_seconds: float
    # POST /suspend answered 202 -> the API reports the service suspended.
    suspend_timeout_seconds: float
    # Reported suspended -> the edge no longer routes to it.
    drain_timeout_seconds: float
    # Whether a resume is a deploy (Render) or an instant process start (the fast sandbox).
    resume_creates_deploy: bool
    # POST /resume (or /deploys) answered -> its deploy is listed.
    deploy_appear_timeout_seconds: float
    # A deploy created -> `live` (or a failed status).
    deploy_timeout_seconds: float
    # `live` (or the resume, without a deploy) -> the instance's /health answers ok.
    healthy_timeout_seconds: float
    # Healthy -> the edge routes to it again.
    rejoin_timeout_seconds: float
    # Zero-downtime switch: the old instance keeps serving this long after `live`...
    overlap_seconds: float
    # ...then gets SIGTERM and up to this long before SIGKILL.
    shutdown_delay_seconds: float

    @property
    def resume_timeout_seconds(self) -> float:
        """From POST /resume until the instance serves: on Render the resume is a deploy
        (listed, built, live), then /health."""
        deploy = (
            self.deploy_appear_timeout_seconds + self.deploy_timeout_seconds
            if self.resume_creates_deploy
            else 0.0
        )
        return deploy + self.healthy_timeout_seconds

    @property
    def handover_seconds(self) -> float:
        """From `live` until the previous instance is certainly gone."""
        return self.overlap_seconds + self.shutdown_delay_seconds

    def summary(self) -> str:
        """One line for the operator: which timings, and the deadlines that matter most."""
        resume = "a deploy" if self.resume_creates_deploy else "a process start"
        return (
            f"{self.target} timing: suspend within {self.suspend_timeout_seconds:g}s, "
            f"deploys live within {self.deploy_timeout_seconds:g}s, resume is {resume}, "
            f"old instance gone {self.handover_seconds:g}s after live"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["handover_seconds"] = self.handover_seconds
        return {_camel(k): v for k, v in data.items()}

    def with_overrides(
        self,
        *,
        suspend_timeout: float | None = None,
        deploy_timeout: float | None = None,
        rejoin_timeout: float | None = None,
        overlap: float | None = None,
    ) -> OpsTiming:
        """Flags win over the target's timings; None means "not given"."""
        return replace(
            self,
            suspend_timeout_seconds=_given(suspend_timeout, self.suspend_timeout_seconds),
            deploy_timeout_seconds=_given(deploy_timeout, self.deploy_timeout_seconds),
            rejoin_timeout_seconds=_given(rejoin_timeout, self.rejoin_timeout_seconds),
            overlap_seconds=_given(overlap, self.overlap_seconds),
        )


def _given(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def is_sandbox(descriptor: Descriptor) -> bool:
    return descriptor.sandbox_timing is not None or descriptor.stack == "sandbox"


def _edge_reaction_seconds(edge: EdgeSettings) -> float:
    """How long the edge takes to notice an upstream went away or came back: one active check
    (interval + timeout), plus the time one failure keeps an upstream out (fail_duration)."""
    return (
        edge.health_check_interval_seconds
        + edge.health_check_timeout_seconds
        + edge.fail_duration_seconds
    )


def sandbox_timing(name: str | None, edge: EdgeSettings | None = None) -> OpsTiming:
    """The deadlines of a sandbox started with `--timing name` (None: fast) whose edge runs
    `edge` (the settings of the stack `sandbox up --stack` chose; None: the defaults)."""
    from koinonia_infra.sandbox.timing import profile

    p = profile(name)
    edge = edge or EdgeSettings()

    def room(seconds: float) -> float:
        return round(seconds * SANDBOX_SLACK_FACTOR + SANDBOX_SLACK_SECONDS, 1)

    return OpsTiming(
        target=f"sandbox ({p.name})",
        poll_interval_seconds=0.25,
        suspend_timeout_seconds=room(p.suspend_deadline_seconds),
        drain_timeout_seconds=room(p.shutdown_delay_seconds + _edge_reaction_seconds(edge)),
        resume_creates_deploy=p.resume_creates_deploy,
        deploy_appear_timeout_seconds=room(1.0),
        deploy_timeout_seconds=room(p.deploy_deadline_seconds),
        healthy_timeout_seconds=room(p.health_timeout_seconds),
        rejoin_timeout_seconds=room(_edge_reaction_seconds(edge)),
        overlap_seconds=p.overlap_seconds,
        shutdown_delay_seconds=p.shutdown_delay_seconds,
    )


def render_timing(settings: Settings | None = None) -> OpsTiming:
    """Render's timings, with the stack's `koinonia:ops` bounds, its edge's health checks and
    its instances' `maxShutdownDelaySeconds` when a stack file is at hand."""
    edge = settings.edge if settings is not None else EdgeSettings()
    shutdown = float(settings.api.max_shutdown_delay_seconds) if settings is not None else 30.0
    ops = settings.ops if settings is not None else OpsSettings()

    return OpsTiming(
        target="render",
        poll_interval_seconds=_given(ops.poll_interval_seconds, RENDER_POLL_SECONDS),
        suspend_timeout_seconds=_given(ops.suspend_timeout_seconds, RENDER_SUSPEND_BOUND_SECONDS),
        # The suspended instance gets SIGTERM and up to its shutdown delay, then the edge notices.
        drain_timeout_seconds=shutdown + _edge_reaction_seconds(edge) + 10.0,
        resume_creates_deploy=True,
        deploy_appear_timeout_seconds=RENDER_DEPLOY_APPEAR_SECONDS,
        deploy_timeout_seconds=_given(
            ops.deploy_timeout_seconds,
            RENDER_BUILD_BOUND_SECONDS + RENDER_HEALTH_GATE_SECONDS,
        ),
        healthy_timeout_seconds=_given(ops.healthy_timeout_seconds, RENDER_HEALTHY_BOUND_SECONDS),
        rejoin_timeout_seconds=_given(
            ops.rejoin_timeout_seconds, _edge_reaction_seconds(edge) + 30.0
        ),
        overlap_seconds=_given(ops.overlap_seconds, RENDER_OVERLAP_SECONDS),
        shutdown_delay_seconds=shutdown,
    )


def timing_for(
    descriptor: Descriptor,
    settings: Settings | None = None,
    sandbox_edge: EdgeSettings | None = None,
) -> OpsTiming:
    """The sandbox's profile for the sandbox (with its edge's settings), Render's timings for
    anything else."""
    if is_sandbox(descriptor):
        return sandbox_timing(descriptor.sandbox_timing, sandbox_edge)
    return render_timing(settings)


def resolve_timing(
    descriptor: Descriptor,
    *,
    from_stack: str | None,
    suspend_timeout: float | None = None,
    deploy_timeout: float | None = None,
    rejoin_timeout: float | None = None,
    overlap: float | None = None,
    state_dir: Path | None = None,
    stack_settings: Settings | None = None,
) -> OpsTiming:
    """The CLI's order, like `verify`'s thresholds: the target's timings, then the stack file's
    `koinonia:ops` (and its api/edge settings) when the deployment comes from a stack
    (`from_stack` names it), then the flags. The sandbox (in `state_dir`) reacts as the edge of
    the stack it runs (`sandbox up --stack`). `stack_settings`: that stack's settings when the
    caller has read them already."""
    settings: Settings | None = None
    sandbox_edge: EdgeSettings | None = None
    if from_stack is not None and not is_sandbox(descriptor):
        from koinonia_infra.project import stack_path
        from koinonia_infra.settings import load_settings

        settings = stack_settings or load_settings(stack_path(from_stack))
    if is_sandbox(descriptor):
        from koinonia_infra.sandbox.lifecycle import resolve_state_dir
        from koinonia_infra.sandbox.stack import read_sandbox_stack

        sandbox_edge = read_sandbox_stack(resolve_state_dir(state_dir)).edge
    return timing_for(descriptor, settings, sandbox_edge).with_overrides(
        suspend_timeout=suspend_timeout,
        deploy_timeout=deploy_timeout,
        rejoin_timeout=rejoin_timeout,
        overlap=overlap,
    )


@dataclass(frozen=True)
class TimingFlags:
    """The deadlines given on the command line; None means the target's."""

    suspend_timeout: float | None = None
    deploy_timeout: float | None = None
    rejoin_timeout: float | None = None
    overlap: float | None = None


def timing_of(
    source: DeploymentSource, descriptor: Descriptor, flags: TimingFlags = TimingFlags()
) -> OpsTiming:
    """`resolve_timing` for the deployment a command's options name."""
    from_stack = source.from_stack if not is_sandbox(descriptor) else None
    return resolve_timing(
        descriptor,
        from_stack=from_stack,
        state_dir=source.state_dir,
        stack_settings=source.stack_settings if from_stack is not None else None,
        **asdict(flags),
    )
