"""Finding the sandbox's binaries, and what tests do when one is missing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from koinonia_infra.errors import EnvironmentProblem
from koinonia_infra.sandbox.binaries import find_binaries


def _root_conftest() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("koinonia_root_conftest", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_missing_binaries_named_with_install_hints(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem) as err:
        find_binaries(path=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert "redis-server not found: install it with `apt-get install redis-server`" in message
    assert "caddy not found" in message
    assert "brew install caddy" in message
    assert err.value.exit_code == 3


def test_require_sandbox_binaries_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = _root_conftest().require_sandbox_binaries
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*redis-server not found"):
        helper()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="redis-server not found"):
        helper()
