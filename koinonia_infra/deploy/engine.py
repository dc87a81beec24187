"""The thin adapter over Pulumi's Automation API, behind the `Engine` protocol.

Only this module imports `pulumi.automation`, and only inside functions: `--help` never pays for
it. It runs the local program (`work_dir` = the folder with Pulumi.yaml) and never saves project
settings (the SDK's model would drop `runtime.options` and `stackConfigDir` from Pulumi.yaml).

Secrets: the Render API key goes to the engine through its environment (`RENDER_APIKEY`), never
on a command line; engine text shown to the user passes through `redact()` first.

Errors (Automation API → project hierarchy):

    ConcurrentUpdateError       → StackLocked (exit 4)
    StackNotFoundError          → ConfigError (exit 2), saying how to create the stack
    CommandError                → OperationFailed (exit 1), last meaningful diagnostic lines
    FileNotFoundError, no CLI   → EngineNotFound (exit 3)
    InvalidVersionError         → EnvironmentProblem (exit 3)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from koinonia_infra.deploy.types import ChangePlan, Engine, EventSink, Step, UpdateResult, merge_op
from koinonia_infra.errors import (
    ConfigError,
    EngineNotFound,
    EnvironmentProblem,
    OperationFailed,
    StackLocked,
)
from koinonia_infra.project import find_project_dir, stack_path

if TYPE_CHECKING:
    from pulumi.automation import PulumiCommand, Stack
    from pulumi.automation.events import EngineEvent


# The Pulumi CLI this tool is tested with; pyproject pins the `pulumi` SDK to the same version.
PULUMI_VERSION = "3.272.0"
OFFICIAL_INSTALLER = f"curl -fsSL https://get.pulumi.com | sh -s -- --version {PULUMI_VERSION}"
NO_ENGINE = (
    "no Pulumi engine found: run `koinonia-infra engine install` "
    f"(installs pulumi {PULUMI_VERSION} for this user) or the official installer: "
    f"{OFFICIAL_INSTALLER}"
)
RENDER_KEY_VARS = ("RENDER_API_KEY", "RENDER_APIKEY")
# Values never shown to the user, even when the engine echoes them.
SECRET_ENV_VARS = (
    *RENDER_KEY_VARS,
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
    "AWS_SECRET_ACCESS_KEY",
    "AZURE_STORAGE_KEY",
)
POLICY_DIR = "policy"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# ------------------------------------------------------------------------------------------
# Secrets in engine text
# ------------------------------------------------------------------------------------------


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """Replace any known secret value (from the environment) with `[secret]`; strip ANSI."""
    env = os.environ if env is None else env
    text = _ANSI.sub("", text)
    for var in SECRET_ENV_VARS:
        value = env.get(var, "")
        if len(value) >= 4:
            text = text.replace(value, "[secret]")
    return text


# ------------------------------------------------------------------------------------------
# Locating and installing the pinned engine
# ------------------------------------------------------------------------------------------


def install_root(version: str = PULUMI_VERSION) -> Path:
    """Per-user folder of the pinned engine: `$XDG_DATA_HOME/koinonia-infra/pulumi/<version>`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "koinonia-infra" / "pulumi" / version


@dataclass(frozen=True)
class EngineLocation:
    command: str
    source: Literal["pinned", "PATH"]

    @property
    def root(self) -> str | None:
        """The `root` PulumiCommand expects (`<root>/bin/pulumi`), when the layout allows it."""
        path = Path(self.command)
        return str(path.parent.parent) if path.parent.name == "bin" else None


def locate_engine() -> EngineLocation:
    """The pinned engine when installed, else `pulumi` on PATH, else EngineNotFound."""
    pinned = install_root() / "bin" / "pulumi"
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return EngineLocation(str(pinned), "pinned")
    found = shutil.which("pulumi")
    if found:
        return EngineLocation(found, "PATH")
    raise EngineNotFound(NO_ENGINE)


def pulumi_command(location: EngineLocation | None = None) -> PulumiCommand:
    """A PulumiCommand for the located engine, version-checked against PULUMI_VERSION."""
    from pulumi.automation import PulumiCommand
    from pulumi.automation.errors import InvalidVersionError
    from semver import VersionInfo

    location = location or locate_engine()
    try:
        if location.root is not None:
            return PulumiCommand(root=location.root, version=VersionInfo.parse(PULUMI_VERSION))
        return PulumiCommand(version=VersionInfo.parse(PULUMI_VERSION))
    except FileNotFoundError:
        raise EngineNotFound(NO_ENGINE) from None
    except PermissionError:
        raise EngineNotFound(f"{location.command}: not executable; {NO_ENGINE}") from None
    except InvalidVersionError as exc:
        raise EnvironmentProblem(
            f"{location.command}: {exc}; run `koinonia-infra engine install` "
            f"(pulumi {PULUMI_VERSION})"
        ) from None
    except (subprocess.CalledProcessError, OSError) as exc:
        raise EnvironmentProblem(f"{location.command} version failed: {exc}") from None


@dataclass(frozen=True)
class EngineStatus:
    command: str
    source: Literal["pinned", "PATH"]
    version: str
    pinned: str = PULUMI_VERSION

    @property
    def matches_pin(self) -> bool:
        return self.version == self.pinned

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "source": self.source,
            "version": self.version,
            "pinnedVersion": self.pinned,
            "matchesPin": self.matches_pin,
        }


def engine_status() -> EngineStatus:
    location = locate_engine()
    command = pulumi_command(location)
    version = str(command.version) if command.version is not None else "unknown"
    return EngineStatus(command=location.command, source=location.source, version=version)


def install_engine() -> EngineStatus:
    """Install exactly PULUMI_VERSION into the per-user folder (needs the internet)."""
    from pulumi.automation import PulumiCommand
    from pulumi.automation.errors import InvalidVersionError
    from semver import VersionInfo

    root = install_root()
    try:
        PulumiCommand.install(root=str(root), version=VersionInfo.parse(PULUMI_VERSION))
    except (OSError, subprocess.CalledProcessError, InvalidVersionError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise EnvironmentProblem(
            f"could not install pulumi {PULUMI_VERSION} into {root}: {redact(str(reason))}; "
            f"alternative: {OFFICIAL_INSTALLER}"
        ) from None
    return EngineStatus(
        command=str(root / "bin" / "pulumi"), source="pinned", version=PULUMI_VERSION
    )


# ------------------------------------------------------------------------------------------
# Backend, passphrase and Render key: fail fast with what to set
# ------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    # The same strict reader as the stack file's settings: duplicate keys, hostile nesting.
    from koinonia_infra.settings import load_yaml_strict

    data = load_yaml_strict(text, source=str(path))
    return data if isinstance(data, dict) else {}


def _login_backend(env: Mapping[str, str]) -> str | None:
    """The backend of a `pulumi login` on this machine, if any."""
    home = Path(env.get("PULUMI_HOME") or Path.home() / ".pulumi")
    try:
        data = json.loads((home / "credentials.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    current = data.get("current") if isinstance(data, dict) else None
    return current if isinstance(current, str) and current else None


def describe_backend(project_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """Which backend the engine will use; EnvironmentProblem when none is configured."""
    env = os.environ if env is None else env
    if env.get("PULUMI_BACKEND_URL"):
        return env["PULUMI_BACKEND_URL"]
    if env.get("PULUMI_ACCESS_TOKEN"):
        return "https://api.pulumi.com (PULUMI_ACCESS_TOKEN)"
    backend = _read_yaml(project_dir / "Pulumi.yaml").get("backend")
    if isinstance(backend, dict) and isinstance(backend.get("url"), str):
        return str(backend["url"])
    login = _login_backend(env)
    if login:
        return f"{login} (pulumi login)"
    raise EnvironmentProblem(
        "no Pulumi backend configured: set PULUMI_ACCESS_TOKEN (Pulumi Cloud) or "
        "PULUMI_BACKEND_URL (e.g. s3://bucket/koinonia with PULUMI_CONFIG_PASSPHRASE)"
    )


def _is_cloud(backend: str) -> bool:
    return backend.startswith("https://") or "PULUMI_ACCESS_TOKEN" in backend


def check_environment(
    stack: str,
    project_dir: Path,
    *,
    need_render_key: bool,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Fail fast on a missing backend, passphrase or Render key; return the extra environment
    for the engine (the Render key as RENDER_APIKEY, the name the provider reads)."""
    env = os.environ if env is None else env
    backend = describe_backend(project_dir, env)
    stack_doc = _read_yaml(stack_path(stack, project_dir))
    provider = str(stack_doc.get("secretsprovider") or "")
    uses_passphrase = (
        "encryptionsalt" in stack_doc
        or provider == "passphrase"
        or (not provider and not _is_cloud(backend))
    )
    has_passphrase = bool(
        env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    )
    if uses_passphrase and not has_passphrase:
        raise EnvironmentProblem(
            f"stack {stack} encrypts its secrets with a passphrase: set PULUMI_CONFIG_PASSPHRASE "
            "(or PULUMI_CONFIG_PASSPHRASE_FILE)"
        )
    extra = {"PULUMI_SKIP_UPDATE_CHECK": "true"}
    key = next((env[v] for v in RENDER_KEY_VARS if env.get(v)), None)
    if key:
        extra["RENDER_APIKEY"] = key
    elif need_render_key:
        config = stack_doc.get("config")
        if not (isinstance(config, dict) and "render:apiKey" in config):
            raise EnvironmentProblem(
                "no Render API key: set RENDER_API_KEY (Render dashboard → Account settings → "
                "API keys)"
            )
    return extra


# ------------------------------------------------------------------------------------------
# Error translation
# ------------------------------------------------------------------------------------------

_NOISE = re.compile(
    r"^(Previewing|Updating|View in Browser|View Live|Type\s+Name|Resources:|Duration:|Outputs:|"
    r"Diagnostics:|\d+ (unchanged|to |created|updated|deleted)|@ |pulumi:pulumi:Stack\s)"
)


def _split_command_error(text: str) -> tuple[str, str]:
    stdout, _, stderr = text.partition("\n stderr: ")
    stdout = stdout.split("\n stdout: ", 1)[-1]
    return stdout, stderr


def meaningful_lines(text: str, *, limit: int = 5) -> list[str]:
    """The last diagnostic lines worth showing from a failed engine command."""
    stdout, stderr = _split_command_error(redact(text))
    lines = [ln.strip() for ln in (stdout + "\n" + stderr).splitlines()]
    lines = [ln for ln in lines if ln and not _NOISE.match(ln) and not set(ln) <= set("-=+~ ")]
    errors = [ln for ln in lines if "error" in ln.lower()]
    picked = errors or lines
    # The same error is often printed twice (diagnostics and summary): keep the last of each.
    unique = list(dict.fromkeys(reversed(picked)))[:limit]
    return list(reversed(unique))


@contextmanager
def translate_errors(stack: str, operation: str) -> Iterator[None]:
    from pulumi.automation.errors import (
        CommandError,
        ConcurrentUpdateError,
        InvalidVersionError,
        StackNotFoundError,
    )

    try:
        yield
    except ConcurrentUpdateError:
        raise StackLocked(
            f"stack {stack} is locked by another update; if none is running: "
            "`pulumi cancel` / `pulumi stack export|import`"
        ) from None
    except StackNotFoundError:
        raise ConfigError(
            f"stack {stack} does not exist in this backend: create it with "
            f"`pulumi stack init {stack}` (or run `koinonia-infra up --stack {stack}`)"
        ) from None
    except CommandError as exc:
        raise OperationFailed(
            f"pulumi {operation} failed for stack {stack}", lines=meaningful_lines(str(exc))
        ) from None
    except FileNotFoundError:
        raise EngineNotFound(NO_ENGINE) from None
    except InvalidVersionError as exc:
        raise EnvironmentProblem(f"pulumi engine: {exc}") from None


# ------------------------------------------------------------------------------------------
# Engine events → steps
# ------------------------------------------------------------------------------------------


def step_from_event(event: EngineEvent) -> Step | None:
    """The step an engine event announces (resource pre / outputs / failure), if any."""
    source = event.resource_pre_event or event.res_outputs_event or event.res_op_failed_event
    if source is None:
        return None
    meta = source.metadata
    return Step(
        op=str(getattr(meta.op, "value", meta.op)),
        urn=meta.urn,
        type=meta.type,
        keys=tuple(meta.keys or ()),
        diffs=tuple(meta.diffs or ()),
        paths=_changed_paths(meta),
    )


def _changed_paths(meta: Any) -> tuple[str, ...]:
    # Old and new inputs ride on the step event; their difference tells a real change from
    # the provider's refresh noise (koinonia_infra/adopt/drift.py).
    from koinonia_infra.adopt.provider import nested_differences

    old, new = getattr(meta, "old", None), getattr(meta, "new", None)
    olds, news = getattr(old, "inputs", None), getattr(new, "inputs", None)
    if not isinstance(olds, Mapping) or not isinstance(news, Mapping):
        return ()
    return tuple(nested_differences(dict(olds), dict(news)))


def policy_violation_text(event: EngineEvent) -> str | None:
    policy = event.policy_event
    if policy is None:
        return None
    where = policy.resource_urn.rsplit("::", 1)[-1] if policy.resource_urn else "stack"
    return redact(
        f"{policy.policy_pack_name}/{policy.policy_name} ({policy.enforcement_level}) "
        f"{where}: {policy.message.strip()}"
    )


class StepCollector:
    """Builds a ChangePlan from the event stream (events arrive on a background thread)."""

    def __init__(self, stack: str) -> None:
        import threading

        self._lock = threading.Lock()
        self._stack = stack
        self._ops: dict[str, str] = {}
        self._steps: dict[str, Step] = {}
        self._violations: list[str] = []

    def __call__(self, event: EngineEvent) -> None:
        step = step_from_event(event) if event.resource_pre_event is not None else None
        violation = policy_violation_text(event)
        with self._lock:
            if step is not None:
                op = merge_op(self._ops.get(step.urn), step.op)
                self._ops[step.urn] = op
                previous = self._steps.get(step.urn)
                keys = step.keys or (previous.keys if previous else ())
                diffs = step.diffs or (previous.diffs if previous else ())
                paths = step.paths or (previous.paths if previous else ())
                self._steps[step.urn] = Step(op, step.urn, step.type, keys, diffs, paths)
            if violation is not None and "mandatory" in violation:
                self._violations.append(violation)

    def plan(self, summary: Mapping[Any, int]) -> ChangePlan:
        with self._lock:
            return ChangePlan(
                stack=self._stack,
                steps=list(self._steps.values()),
                summary={str(getattr(k, "value", k)): int(v) for k, v in summary.items()},
                policy_violations=list(self._violations),
            )


# ------------------------------------------------------------------------------------------
# The real engine
# ------------------------------------------------------------------------------------------


class PulumiEngine:
    """An Automation API stack of the local program."""

    def __init__(self, stack: Stack, *, policy_pack: Path | None) -> None:
        self._stack = stack
        self._policy_packs = [str(policy_pack)] if policy_pack is not None else None

    @property
    def stack_name(self) -> str:
        return self._stack.name

    def _tee(self, collector: StepCollector, on_event: EventSink | None) -> EventSink:
        def sink(event: EngineEvent) -> None:
            collector(event)
            if on_event is not None:
                on_event(event)

        return sink

    def preview(
        self,
        *,
        on_event: EventSink | None = None,
        diff: bool = False,
        config_file: Path | None = None,
        refresh: bool = False,
    ) -> ChangePlan:
        collector = StepCollector(self.stack_name)
        with translate_errors(self.stack_name, "preview"):
            try:
                result = self._stack.preview(
                    on_event=self._tee(collector, on_event),
                    diff=diff or None,
                    # `pulumi preview --refresh`: read every resource's live state first.
                    refresh=refresh or None,
                    policy_packs=self._policy_packs,
                    config_file=str(config_file) if config_file else None,
                    color="never",
                    suppress_progress=True,
                )
            except RuntimeError as exc:
                if "summary event" not in str(exc):
                    raise
                raise OperationFailed(
                    f"pulumi preview of stack {self.stack_name} ended without a summary"
                ) from None
        return collector.plan(result.change_summary)

    def up(
        self,
        *,
        on_event: EventSink | None = None,
        target: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> UpdateResult:
        collector = StepCollector(self.stack_name)
        with translate_errors(self.stack_name, "up"):
            result = self._stack.up(
                on_event=self._tee(collector, on_event),
                # `pulumi up --target/--exclude` (pulumi/pulumi pkg/cmd/pulumi/operations/up.go):
                # a resource left out keeps its previous state (a `same` step).
                target=list(target) if target else None,
                exclude=list(exclude) if exclude else None,
                policy_packs=self._policy_packs,
                color="never",
                suppress_progress=True,
                suppress_outputs=True,
                # True would put decrypted config into the result; nothing here needs it.
                show_secrets=False,
            )
        changes = result.summary.resource_changes or {}
        return UpdateResult(
            summary={str(k): int(v) for k, v in changes.items()},
            outputs={k: v.value for k, v in result.outputs.items() if not v.secret},
        )

    def outputs(self) -> dict[str, Any]:
        with translate_errors(self.stack_name, "stack output"):
            values = self._stack.outputs()
        return {k: v.value for k, v in values.items() if not v.secret}


def open_stack(
    stack: str,
    *,
    project_dir: Path | None = None,
    need_render_key: bool = True,
    create: bool = False,
    policy: bool = True,
) -> Engine:
    """Select (or, for `up`, create) the stack of the local program, after checking that the
    engine, the backend, the passphrase and the Render key are all there."""
    from pulumi.automation import LocalWorkspaceOptions, create_or_select_stack, select_stack

    from koinonia_infra.pulumi_config import check_stack

    project_dir = project_dir or find_project_dir()
    # The engine would refuse the stack after a slow start; say it first, in its words.
    check_stack(stack_path(stack, project_dir))
    extra_env = check_environment(stack, project_dir, need_render_key=need_render_key)
    command = pulumi_command()
    # No project_settings / stack_settings here: passing them would rewrite Pulumi.yaml.
    options = LocalWorkspaceOptions(pulumi_command=command, env_vars=extra_env)
    init = create_or_select_stack if create else select_stack
    with translate_errors(stack, "stack select"):
        selected = init(stack, work_dir=str(project_dir), opts=options)
    pack = project_dir / POLICY_DIR
    has_pack = policy and (pack / "PulumiPolicy.yaml").is_file()
    return PulumiEngine(selected, policy_pack=pack if has_pack else None)
