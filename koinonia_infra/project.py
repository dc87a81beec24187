"""Locating the Pulumi project (the folder with Pulumi.yaml) and its stack files."""

from __future__ import annotations

import os
from pathlib import Path

from koinonia_infra.errors import UsageError

PROJECT_FILE = "Pulumi.yaml"
# The stack a command works on when it is given none.
DEFAULT_STACK = "prod"


def find_project_dir(start: Path | None = None) -> Path:
    """`KOINONIA_PROJECT_DIR`, else the nearest folder with Pulumi.yaml upwards from `start`."""
    env = os.environ.get("KOINONIA_PROJECT_DIR")
    if env:
        path = Path(env)
        if not (path / PROJECT_FILE).is_file():
            raise UsageError(f"KOINONIA_PROJECT_DIR={env}: no {PROJECT_FILE} there")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise UsageError(
        f"no {PROJECT_FILE} in {here} or above: run from the koinonia-infra project folder "
        "or set KOINONIA_PROJECT_DIR"
    )


def stack_path(stack: str, project_dir: Path | None = None) -> Path:
    stack = stack.rsplit("/", 1)[-1]
    if not stack or stack.startswith("."):
        raise UsageError(f"--stack {stack!r}: not a stack name")
    # An org-qualified name (org/project/stack) keeps only the last part for the file name.
    return (project_dir or find_project_dir()) / f"Pulumi.{stack}.yaml"
