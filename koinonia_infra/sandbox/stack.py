"""Which stack's settings the sandbox runs: its edge (so the sandbox's Caddyfile is the one
production runs, from the same `render_caddyfile`) and its verify thresholds (so `verify
--target sandbox` judges the sandbox as `verify --stack` judges production).

`sandbox up --stack NAME` chooses; by default the `prod` stack file when the project has one,
otherwise (no project, or `--stack none`) the settings' defaults. The choice reaches the
supervisor in its environment (`KOINONIA_SANDBOX_STACK`, no secret in it), which builds the edge
from it and writes it to `stack.json` in the state dir (its own writes report a full disk the one
way: an error event naming the path); `verify` / `verify --capacity` against the sandbox read
their thresholds from that file, so a later edit of the stack file does not silently disagree
with the edge already running.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from koinonia_infra.errors import ConfigError, UsageError
from koinonia_infra.files import write_atomic
from koinonia_infra.project import DEFAULT_STACK
from koinonia_infra.settings import EdgeSettings, VerifySettings

STACK_FILE = "stack.json"
# `--stack none`: the settings' defaults even inside a project with stack files.
NO_STACK = "none"
# A test's override of the edge (a JSON object in the stack file's `koinonia:edge` shape), so it
# can shorten a timeout without waiting out the production value. It wins over the stack.
SANDBOX_EDGE_ENV = "KOINONIA_SANDBOX_EDGE"
# `sandbox up` to its supervisor: the chosen stack, as `SandboxStack.to_json`.
SANDBOX_STACK_ENV = "KOINONIA_SANDBOX_STACK"


@dataclass(frozen=True)
class SandboxStack:
    """The settings a sandbox runs with; `name` None means the defaults."""

    name: str | None = None
    source: str | None = None  # the stack file read, for the user to see
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)

    def describe(self) -> str:
        return f"{self.name} ({self.source})" if self.name else "defaults (no stack file)"

    def to_json(self) -> dict[str, object]:
        return {
            "stack": self.name,
            "source": self.source,
            "edge": self.edge.model_dump(mode="json", by_alias=True),
            "verify": self.verify.model_dump(mode="json", by_alias=True),
        }


def resolve_sandbox_stack(name: str | None) -> SandboxStack:
    """`--stack NAME` of `sandbox up`: that stack file (which must exist), `none` for the
    defaults, or (None) the `prod` stack file when a project with one is found, else defaults."""
    from koinonia_infra.project import find_project_dir, stack_path
    from koinonia_infra.settings import load_settings

    if name == NO_STACK:
        return SandboxStack()
    if name is None:
        try:
            path = stack_path(DEFAULT_STACK, find_project_dir())
        except UsageError:  # no Pulumi.yaml here or above: nothing to follow
            return SandboxStack()
        if not path.is_file():
            return SandboxStack()
        name = DEFAULT_STACK
    else:
        path = stack_path(name)
    settings = load_settings(path)
    return SandboxStack(name, str(path), settings.edge, settings.verify)


def write_sandbox_stack(state_dir: Path, stack: SandboxStack) -> None:
    # No secret lives in edge or verify settings; the file is still private like its siblings.
    write_atomic(state_dir / STACK_FILE, json.dumps(stack.to_json(), indent=2) + "\n", mode=0o600)


def _from_json(raw: str, where: str) -> SandboxStack:
    try:
        data = json.loads(raw)
        return SandboxStack(
            name=data.get("stack"),
            source=data.get("source"),
            edge=EdgeSettings.model_validate(data.get("edge") or {}),
            verify=VerifySettings.model_validate(data.get("verify") or {}),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"{where}: {' '.join(first[:3])}") from None


def read_sandbox_stack(state_dir: Path) -> SandboxStack:
    """What the supervisor wrote; the defaults for a state dir without it (a sandbox started
    before the file existed)."""
    path = state_dir / STACK_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return SandboxStack()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    return _from_json(raw, str(path))


def stack_for_supervisor(stack: SandboxStack) -> dict[str, str]:
    """The environment entry that hands `stack` to the supervisor."""
    return {SANDBOX_STACK_ENV: json.dumps(stack.to_json())}


def supervisor_stack() -> SandboxStack:
    """The stack `sandbox up` handed over; the defaults when started without one."""
    raw = os.environ.get(SANDBOX_STACK_ENV)
    return _from_json(raw, SANDBOX_STACK_ENV) if raw else SandboxStack()


def edge_settings(stack: SandboxStack) -> EdgeSettings:
    """The edge the supervisor starts: `KOINONIA_SANDBOX_EDGE` when set (tests), else the
    stack's."""
    raw = os.environ.get(SANDBOX_EDGE_ENV)
    if not raw:
        return stack.edge
    try:
        return EdgeSettings.model_validate(json.loads(raw))
    except (ValueError, TypeError) as exc:  # JSONDecodeError and ValidationError are ValueErrors
        first = str(exc).splitlines()
        raise ConfigError(f"{SANDBOX_EDGE_ENV}: {' '.join(first[:3])}") from None
