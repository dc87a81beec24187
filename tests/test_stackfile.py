"""Round-trip edits of a stack file keep its own indentation (ruamel's guess of it), so the
diff of `destroy-instance` is the removed instance and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from koinonia_infra.deploy.stackfile import remove_instance

SEQUENCE_STYLES = {
    # (name, text before, text after removing instance 2)
    "dash at the key's column": (
        "config:\n  koinonia:api:\n    instances:\n    - 1\n    - 2\n    secretEnv:\n    - JWT\n",
        "config:\n  koinonia:api:\n    instances:\n    - 1\n    secretEnv:\n    - JWT\n",
    ),
    "dash indented by two": (
        "config:\n  koinonia:api:\n    instances:\n      - 1\n      - 2\n",
        "config:\n  koinonia:api:\n    instances:\n      - 1\n",
    ),
    "a comment after the key": (
        "config:\n  koinonia:api:\n    name: x\n    secretEnv:   # encrypted\n      - JWT\n"
        "      - TWILIO\n    instances: [1, 2]\n",
        "config:\n  koinonia:api:\n    name: x\n    secretEnv:   # encrypted\n      - JWT\n"
        "      - TWILIO\n    instances: [1]\n",
    ),
    "a quoted value holding ': #'": (
        'config:\n  koinonia:api:\n    name: "a: #b"\n    secretEnv:\n      - JWT\n'
        "    instances: [1, 2]\n",
        'config:\n  koinonia:api:\n    name: "a: #b"\n    secretEnv:\n      - JWT\n'
        "    instances: [1]\n",
    ),
    "no block sequence": (
        "config:\n  koinonia:api:\n    instances: [1, 2]  # explicit\n",
        # ruamel keeps a trailing comment at its column.
        "config:\n  koinonia:api:\n    instances: [1]     # explicit\n",
    ),
}


@pytest.mark.parametrize("name", sorted(SEQUENCE_STYLES))
def test_removing_an_instance_changes_only_that_instance(name: str) -> None:
    before, after = SEQUENCE_STYLES[name]
    assert remove_instance(before, 2) == after


def test_the_production_stack_file_keeps_every_other_line() -> None:
    text = (Path(__file__).parent.parent / "Pulumi.prod.yaml").read_text()
    edited = remove_instance(text, 2)
    removed = [line for line in text.splitlines() if line not in edited.splitlines()]
    assert removed == ["    instances: [1, 2]"]
