"""Nothing the tool does may leave every instance of a deployment out of service.

Two layers, because Render offers no lock:

1. **A deployment lock on this machine** (`deployment_lock`): `drill failover`, `rollout` and
   `destroy-instance` take an exclusive `flock` on a file named after the deployment's edge URL,
   so two of them started on one machine cannot overlap; the second one stops at once (exit 4)
   naming the holder. The kernel drops the lock when its process dies, even by SIGKILL, so it
   never goes stale (what Kamal's deploy lock needs `kamal lock release` for).
   Across machines there is nothing to lock on: Render's REST API has no lock, lease or
   conditional-write primitive (the OpenAPI spec vendored in cloudy-sky-software/pulumi-render,
   `render-openapi.json`, has no lock resource and no `If-Match`/ETag anywhere), and writing a
   marker into a service (an env var, say) would be drift that Pulumi reverts. Between CI jobs,
   GitHub Actions' `concurrency` group `koinonia-prod` serialises deploy, rollback and any
   operation workflow: one job of a group runs at a time, never cancelled with
   `cancel-in-progress: false` (https://docs.github.com/en/actions/using-jobs/using-concurrency).
2. **A re-check right before each suspend or deploy** (`Guard.require`): every OTHER instance
   answers `/health`, is not suspended and has no deploy in progress, read from the API at that
   moment. While a drill holds its instance down it keeps re-checking (`Guard.watching`) and
   aborts, which resumes its instance, as soon as that stops being true. Two operators on two
   machines racing through the same second may both pass the re-check; each then sees the other
   instance go down within one watch interval, and both bring their instance back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from koinonia_infra.descriptor import Descriptor
from koinonia_infra.errors import EnvironmentProblem, OperationFailed, RenderApiError, StackLocked
from koinonia_infra.measure.health import Probe, health_url
from koinonia_infra.measure.poll import Sleep
from koinonia_infra.render_api import RenderClient

if TYPE_CHECKING:
    from koinonia_infra.verify.model import VerifyReport

# How often a drill re-reads the other instances while it holds one down: each round is one
# /health probe and two API reads per other instance. Render allows 400 GETs a minute per user
# (100 in earlier versions of https://api-docs.render.com/reference/rate-limiting); a 2-instance
# drill uses 60.
WATCH_INTERVAL_SECONDS = 2.0


# ---- how to bring an instance back ---------------------------------------------------------------


def resume_hint(number: int, name: str, flags: str) -> str:
    return (
        f"api-{number} ({name}) is suspended: bring it back with "
        f"`koinonia-infra resume {number}{flags}`"
    )


def suspended_hints(suspended: Iterable[tuple[int, str]], flags: str) -> list[str]:
    return [resume_hint(number, name, flags) for number, name in sorted(suspended)]


def suspended_in_verify(report: VerifyReport) -> list[tuple[int, str]]:
    """The instances a verify report saw suspended (its deploy-status checks read the API)."""
    names = {
        str(i.get("target")): (int(i["number"]), str(i.get("name", "")))
        for i in report.deployment.get("instances", [])
        if isinstance(i, dict) and "number" in i
    }
    return sorted(
        names[c.target]
        for c in report.checks
        if c.id == "deploy-status"
        and c.values.get("suspended") == "suspended"
        and c.target in names
    )


# ---- the re-check --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    number: int
    text: str
    # Seen in the API (suspended, deploying): certain. A failed /health may be one slow answer.
    certain: bool


@dataclass(slots=True)
class Guard:
    """Reads whether the other instances are in service, right now."""

    descriptor: Descriptor
    client: RenderClient
    probe: Probe
    flags: str = ""
    interval: float = WATCH_INTERVAL_SECONDS
    _strikes: dict[int, int] = field(default_factory=dict)

    def problems(
        self, *, exclude: int | None, strict: bool = True, health: bool = True
    ) -> list[Problem]:
        """What keeps each instance other than `exclude` out of service. With `strict=False`
        (while watching) an API read that fails is not a problem by itself: /health still is.
        `health=False` reads the API only."""
        found: list[Problem] = []
        for inst in sorted(self.descriptor.instances, key=lambda i: i.number):
            if inst.number == exclude:
                continue
            where = f"api-{inst.number} ({inst.name})"
            try:
                if self.client.get_service(inst.service_id).is_suspended:
                    found.append(
                        Problem(inst.number, resume_hint(inst.number, inst.name, self.flags), True)
                    )
                    continue
                latest = self.client.latest_deploy(inst.service_id)
            except RenderApiError:
                if strict:
                    raise
                latest = None
            if latest is not None and latest.in_progress:
                found.append(
                    Problem(
                        inst.number, f"{where} is deploying ({latest.id} {latest.status})", True
                    )
                )
                continue
            if not health:
                continue
            result = self.probe(health_url(inst.url))
            if not result.ok:
                found.append(
                    Problem(inst.number, f"{where} is not healthy: {result.detail}", False)
                )
        return found

    def require(
        self, action: str, *, exclude: int | None, health: bool = True, strict: bool = True
    ) -> None:
        """Refuse `action` unless every instance but `exclude` is in service. `strict=False`: an
        API read that fails is left to the caller's next step (which reads the API anyway)."""
        found = self.problems(exclude=exclude, health=health, strict=strict)
        if found:
            others = "the other instances" if exclude is not None else "every instance"
            raise OperationFailed(
                f"refusing to {action}: {others} must be in service, and "
                f"{len(found)} {'is' if len(found) == 1 else 'are'} not",
                lines=[p.text for p in found],
            )

    def check_while_down(self, number: int) -> None:
        """Raise when the others stop serving while `number` is held down. A failed /health must
        be seen twice in a row (one slow answer under load must not abort a drill)."""
        abort: list[str] = []
        seen: set[int] = set()
        for problem in self.problems(exclude=number, strict=False):
            seen.add(problem.number)
            strikes = self._strikes.get(problem.number, 0) + 1
            self._strikes[problem.number] = strikes
            if problem.certain or strikes >= 2:
                abort.append(problem.text)
        for other in list(self._strikes):
            if other not in seen:
                del self._strikes[other]
        if abort:
            raise OperationFailed(
                f"aborted: api-{number} was brought back because another instance stopped "
                f"serving while it was down ({abort[0]})",
                lines=abort[1:],
            )

    def watching(
        self, sleep: Sleep, *, clock: Callable[[], float], number: int, active: Callable[[], bool]
    ) -> Sleep:
        """`sleep` that also re-checks the others every `interval` while `active()`; every wait
        of the drill goes through its sleep, so the watch covers all of them."""
        next_check = [float("-inf")]

        def watched(seconds: float) -> None:
            if active() and clock() >= next_check[0]:
                next_check[0] = clock() + self.interval
                self.check_while_down(number)
            sleep(seconds)

        return watched


# ---- the lock on this machine --------------------------------------------------------------------


def lock_dir() -> Path:
    from koinonia_infra.targets import default_sandbox_dir

    return default_sandbox_dir().parent / "locks"


def lock_path(descriptor: Descriptor, directory: Path | None = None) -> Path:
    # The edge URL is the deployment's one public identity, whichever way it was named
    # (--stack, --outputs or --target sandbox).
    key = descriptor.edge_url.strip().rstrip("/").lower()
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (directory or lock_dir()) / f"deployment-{digest}.lock"


@contextlib.contextmanager
def deployment_lock(
    descriptor: Descriptor, operation: str, *, directory: Path | None = None
) -> Iterator[None]:
    """Hold the deployment's lock on this machine for the block; another holder: StackLocked."""
    path = lock_path(descriptor, directory)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise EnvironmentProblem(
            f"{path}: cannot create the deployment lock: {exc.strerror}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackLocked(
                f"{_holder(fd)} is running against {descriptor.edge_url}; "
                f"wait for it to finish before running {operation}",
                lines=[f"lock: {path}"],
            ) from None
        info = {
            "operation": operation,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "startedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing drops the flock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "operation" not in info:
        return "another operation"
    return (
        f"`{info['operation']}` (pid {info.get('pid')} on {info.get('host')}, "
        f"since {info.get('startedAt')})"
    )


@contextlib.contextmanager
def hold_for_removal(descriptor: Descriptor, number: int, *, stack: str | None) -> Iterator[None]:
    """Around `destroy-instance N`: this machine's lock, then a refusal while an instance other
    than N is suspended (a drill holds it down) or deploying (a rollout). Their /health is
    `check_survivors`' part, with its --force."""
    from koinonia_infra.measure.health import probe_health
    from koinonia_infra.targets import DeploymentSource

    with deployment_lock(descriptor, f"destroy-instance {number}"):
        client = RenderClient.for_descriptor(descriptor)
        if client is None:
            raise EnvironmentProblem(
                "destroy-instance needs the Render API to check the other instances: "
                "set RENDER_API_KEY"
            )
        with client:
            flags = DeploymentSource(stack=stack).flags
            guard = Guard(descriptor, client, probe_health, flags=flags)
            guard.require(f"remove instance {number}", exclude=number, health=False)
        yield
