"""Where a command finds its deployment: `--stack NAME | --outputs FILE | --target sandbox`."""

from __future__ import annotations

import os
from pathlib import Path

from koinonia_infra.descriptor import Descriptor, load_descriptor
from koinonia_infra.errors import UsageError

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
    default_stack: str = "prod",
) -> Descriptor:
    """One of the three sources; none given means the default stack."""
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

    return read_descriptor(stack or default_stack)
