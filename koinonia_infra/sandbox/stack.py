"""Which stack's settings the sandbox runs: its edge (so the sandbox's Caddyfile is the one
production runs, from the same `render_caddyfile`) and its verify thresholds (so `verify
--target sandbox` judges the sandbox as `verify --stack` judges production).

`sandbox up --stack NAME` chooses; by default the `prod` stack file when the project has one,
otherwise (no project, or `--stack none`) the settings' defaults. The choice is written to
`stack.json` in the state dir when the sandbox starts: the supervisor builds the edge from it,
and `verify` / `verify --capacity` against the sandbox read their thresholds from it, so a later
edit of the stack file does not silently disagree with the edge already running.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from koinonia_infra.errors import ConfigError, UsageError
from koinonia_infra.files import write_atomic
from koinonia_infra.settings import EdgeSettings, VerifySettings

STACK_FILE = "stack.json"
DEFAULT_STACK = "prod"
# `--stack none`: the settings' defaults even inside a project with stack files.
NO_STACK = "none"
# A test's override of the edge (a JSON object in the stack file's `koinonia:edge` shape), so it
# can shorten a timeout without waiting out the production value. It wins over the stack.
SANDBOX_EDGE_ENV = "KOINONIA_SANDBOX_EDGE"


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


def read_sandbox_stack(state_dir: Path) -> SandboxStack:
    """What `write_sandbox_stack` wrote; the defaults for a state dir without it (a sandbox
    started before the file existed)."""
    path = state_dir / STACK_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SandboxStack(
            name=data.get("stack"),
            source=data.get("source"),
            edge=EdgeSettings.model_validate(data.get("edge") or {}),
            verify=VerifySettings.model_validate(data.get("verify") or {}),
        )
    except FileNotFoundError:
        return SandboxStack()
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"{path}: {' '.join(first[:3])}") from None


def edge_settings(state_dir: Path) -> EdgeSettings:
    """The edge the supervisor starts: `KOINONIA_SANDBOX_EDGE` when set (tests), else the
    stack chosen by `sandbox up`."""
    raw = os.environ.get(SANDBOX_EDGE_ENV)
    if not raw:
        return read_sandbox_stack(state_dir).edge
    try:
        return EdgeSettings.model_validate(json.loads(raw))
    except (ValueError, TypeError) as exc:  # JSONDecodeError and ValidationError are ValueErrors
        first = str(exc).splitlines()
        raise ConfigError(f"{SANDBOX_EDGE_ENV}: {' '.join(first[:3])}") from None
