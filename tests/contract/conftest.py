"""Fixtures of the contract tests; the helpers live in contract_support.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contract_support import Served, serve_plane

from koinonia_infra.sandbox.timing import FAST


@pytest.fixture
def plane() -> Iterator[Served]:
    """The control plane over a recording fake backend, with the fast timing profile."""
    yield from serve_plane(FAST)
