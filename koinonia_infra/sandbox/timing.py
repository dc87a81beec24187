"""The sandbox's timing profiles: how long each step of a suspend, resume and deploy takes.

`fast` (the default) keeps the sandbox quick: suspend and resume act on the process at once and a
deploy switches instantly. `render` reproduces the SEQUENCE Render follows, with delays scaled
down so tests stay fast:

- suspend answers 202 and the service stops `suspend_delay_seconds` later
  (`POST /services/{serviceId}/suspend` answers 202 "Service suspended successfully", with no
  body, in Render's OpenAPI reference as vendored in cloudy-sky-software/pulumi-render,
  provider/cmd/pulumi-gen-render/openapi.yml: accepted, not done);
- resume answers 202 and creates a deploy with trigger `service_resumed` (a value of the
  `deploy.trigger` enum in the same spec) that builds (`build_seconds`) and boots like any
  deploy, health-gated;
- a zero-downtime deploy keeps the old instance `overlap_seconds` after the new one is live,
  then SIGTERMs it. Render's deploy sequence: "5. Switch traffic to the new instance. 6. After
  60 seconds, send SIGTERM to the old instance. 7. If the old instance doesn't exit within the
  shutdown delay, send SIGKILL."
  (https://render.com/articles/how-render-handles-zero-downtime-deploys); the shutdown delay is
  `maxShutdownDelaySeconds`, default 30, 1..300 (schema maxShutdownDelaySeconds, same spec).

`RENDER_REAL` holds Render's own (unscaled) values, for reference: the deadlines of commands
waiting on a real deployment come from koinonia_infra/ops/timing.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TimingName = Literal["fast", "render"]
TIMING_NAMES: tuple[TimingName, ...] = ("fast", "render")


@dataclass(frozen=True)
class TimingProfile:
    name: str
    # From the 202 of POST /suspend until the service's process stops.
    suspend_delay_seconds: float
    # Whether POST /resume creates a deploy (Render) or just starts the process again (fast).
    resume_creates_deploy: bool
    # A deploy's `build_in_progress` phase.
    build_seconds: float
    # How long a new process may take to answer its health check before `update_failed`.
    health_timeout_seconds: float
    # The old process keeps serving this long after the new one is live (Render: 60 s).
    overlap_seconds: float
    # After SIGTERM, how long the old process may drain before SIGKILL (Render:
    # maxShutdownDelaySeconds, default 30).
    shutdown_delay_seconds: float

    @property
    def suspend_deadline_seconds(self) -> float:
        """An upper bound from the suspend call until the service has stopped serving."""
        return self.suspend_delay_seconds + self.shutdown_delay_seconds + 2.0

    @property
    def deploy_deadline_seconds(self) -> float:
        """An upper bound from a deploy's creation until it is `live` or `update_failed`."""
        return self.build_seconds + self.health_timeout_seconds + 2.0


FAST = TimingProfile(
    name="fast",
    suspend_delay_seconds=0.0,
    resume_creates_deploy=False,
    build_seconds=0.3,
    health_timeout_seconds=8.0,
    overlap_seconds=0.0,
    shutdown_delay_seconds=2.0,
)

# Render's sequence at roughly 1/20 of its real durations (60 s overlap -> 3 s).
RENDER = TimingProfile(
    name="render",
    suspend_delay_seconds=1.5,
    resume_creates_deploy=True,
    build_seconds=1.5,
    health_timeout_seconds=8.0,
    overlap_seconds=3.0,
    shutdown_delay_seconds=2.0,
)

# Render itself, for reference. Documented: the 60 s overlap and the 30 s default shutdown delay
# (see above). NOT documented, our own allowances: how long a suspend takes to act, a build, and
# a health check before Render gives up on a deploy (the ops code makes these configurable).
RENDER_REAL = TimingProfile(
    name="render-real",
    suspend_delay_seconds=30.0,
    resume_creates_deploy=True,
    build_seconds=900.0,
    health_timeout_seconds=900.0,
    overlap_seconds=60.0,
    shutdown_delay_seconds=30.0,
)

PROFILES: dict[str, TimingProfile] = {"fast": FAST, "render": RENDER}


def profile(name: str | None) -> TimingProfile:
    """The sandbox profile called `name` (None: the default, fast)."""
    from koinonia_infra.errors import UsageError

    chosen = PROFILES.get(name or "fast")
    if chosen is None:
        raise UsageError(f"--timing {name}: choose {' or '.join(TIMING_NAMES)}")
    return chosen
