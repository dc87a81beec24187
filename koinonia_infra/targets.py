"""Where a command finds its deployment: `--stack NAME | --outputs FILE | --target sandbox`."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from koinonia_infra.descriptor import Descriptor, load_descriptor
from koinonia_infra.errors import ConfigError, EnvironmentProblem, UsageError
from koinonia_infra.project import DEFAULT_STACK

if TYPE_CHECKING:
    from koinonia_infra.render_api import RenderClient
    from koinonia_infra.sandbox.stack import SandboxStack
    from koinonia_infra.settings import Settings

DESCRIPTOR_FILE = "descriptor.json"


def default_sandbox_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "koinonia-infra" / "sandbox"


def sandbox_descriptor_path(state_dir: Path | None) -> Path:
    return (state_dir or default_sandbox_dir()) / DESCRIPTOR_FILE


def resolve_descriptor(
    *,
    stack: str | None = None,
    outputs: Path | None = None,
    target: str | None = None,
    state_dir: Path | None = None,
    default_stack: str = DEFAULT_STACK,
    settings: Settings | None = None,
    render_api_url: str | None = None,
) -> Descriptor:
    """One of the three sources; none given means the default stack (`settings`: its settings
    when the caller has them; `render_api_url`: where the edge's id is looked up)."""
    given = [name for name, v in (("--stack", stack), ("--outputs", outputs), ("--target", target))
             if v is not None]  # fmt: skip
    if len(given) > 1:
        raise UsageError(f"choose one of --stack, --outputs, --target (got {', '.join(given)})")
    if state_dir is not None and target is None:
        raise UsageError("--state-dir goes with --target sandbox")
    if outputs is not None:
        return load_descriptor(outputs)
    if target is not None:
        if target != "sandbox":
            raise UsageError(f"--target {target!r}: the only target is 'sandbox'")
        from koinonia_infra.sandbox.state import lock_held

        path = sandbox_descriptor_path(state_dir)
        # The descriptor outlives a killed supervisor or a reboot; the lock does not.
        if not path.exists() or not lock_held(path.parent):
            raise UsageError(
                f"no running sandbox in {path.parent}: start one with `koinonia-infra sandbox up`"
            )
        return load_descriptor(path)
    from koinonia_infra.deploy.outputs import read_descriptor

    return read_descriptor(stack or default_stack, settings=settings, api_url=render_api_url)


@dataclass(frozen=True)
class DeploymentSource:
    """The deployment as a command's options name it (`--stack | --outputs | --target`, with
    `--state-dir` and `--render-api-url`), and what follows from them: the descriptor, the
    Render client, the stack whose settings apply, the flags that name it again."""

    stack: str | None = None
    outputs: Path | None = None
    target: str | None = None
    state_dir: Path | None = None
    render_api_url: str | None = None

    def descriptor(self) -> Descriptor:
        settings = None
        if self.from_stack is not None:
            try:
                settings = self.stack_settings
            except ConfigError:
                # The outputs still describe the deployment (without the edge's name); a
                # command that needs the settings reads them itself and names the problem.
                settings = None
        return resolve_descriptor(
            stack=self.stack,
            outputs=self.outputs,
            target=self.target,
            state_dir=self.state_dir,
            settings=settings,
            render_api_url=self.render_api_url,
        )

    @cached_property
    def stack_settings(self) -> Settings | None:
        """The settings of the stack the deployment comes from (`from_stack`), read once per
        command; None for `--outputs` and `--target`. A missing or invalid stack file raises
        `ConfigError` naming it."""
        if self.from_stack is None:
            return None
        from koinonia_infra.project import stack_path
        from koinonia_infra.settings import load_settings

        return load_settings(stack_path(self.from_stack))

    @property
    def from_stack(self) -> str | None:
        """The stack whose settings (`koinonia:verify`, `:ops`, `:monitor`) apply: the one the
        deployment comes from; None for `--outputs` and `--target`."""
        if self.outputs is None and self.target is None:
            return self.stack or DEFAULT_STACK
        return None

    @property
    def flags(self) -> str:
        """The options that name this deployment again, for a command suggested to the user
        (e.g. ` --target sandbox --state-dir DIR`); empty for the default stack."""
        if self.target is not None:
            flags = f" --target {shlex.quote(self.target)}"
            state_dir = self.state_dir
            return flags + (f" --state-dir {shlex.quote(str(state_dir))}" if state_dir else "")
        if self.outputs is not None:
            return f" --outputs {shlex.quote(str(self.outputs))}"
        return f" --stack {shlex.quote(self.stack)}" if self.stack else ""

    def sandbox_stack(self) -> SandboxStack | None:
        """With `--target sandbox`: the stack the sandbox runs (`sandbox up --stack`)."""
        if self.target != "sandbox":
            return None
        from koinonia_infra.sandbox.lifecycle import resolve_state_dir
        from koinonia_infra.sandbox.stack import read_sandbox_stack

        return read_sandbox_stack(resolve_state_dir(self.state_dir))

    def optional_client(self, descriptor: Descriptor, **limits: float) -> RenderClient | None:
        """The Render client (`render_api.api_access` decides which key goes where), or None
        without a key. `limits`: the client's `timeout` and `retry_deadline`."""
        from koinonia_infra.render_api import RenderClient

        return RenderClient.for_descriptor(descriptor, self.render_api_url, **limits)

    def client(self, descriptor: Descriptor, *, required: str, **limits: float) -> RenderClient:
        """The Render client for an operation (`required` names it) that cannot go without."""
        client = self.optional_client(descriptor, **limits)
        if client is None:
            raise EnvironmentProblem(
                f"{required} needs the Render API: set RENDER_API_KEY (or RENDER_APIKEY)"
            )
        return client
