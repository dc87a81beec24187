"""The real Pulumi engine: file backend in tmp, a passphrase, a program that needs no Render
credentials. Runs when a `pulumi` binary is available (PATH or the pinned install); skipped with
the reason otherwise, and FAILS instead when KOINONIA_REQUIRE_ENGINE=1 (set where CI installs it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from engine_fakes import SENTINEL

from koinonia_infra.deploy.engine import locate_engine, open_stack
from koinonia_infra.errors import EngineNotFound

pytestmark = pytest.mark.engine


@pytest.fixture(autouse=True)
def _need_engine() -> None:
    try:
        locate_engine()  # the same lookup the CLI does: pinned install, then PATH
    except EngineNotFound:
        pass
    else:
        return
    missing = (
        "no `pulumi` binary on PATH or in the pinned install (`koinonia-infra engine install`)"
    )
    if os.environ.get("KOINONIA_REQUIRE_ENGINE") == "1":
        pytest.fail(f"KOINONIA_REQUIRE_ENGINE=1 but {missing}")
    pytest.skip(
        f"real Pulumi engine test NOT run: {missing}; "
        "KOINONIA_REQUIRE_ENGINE=1 turns this skip into a failure"
    )


@pytest.fixture
def tiny_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    venv = Path(sys.prefix)
    (project / "Pulumi.yaml").write_text(
        "name: engine-test\n"
        "runtime:\n"
        "  name: python\n"
        "  options:\n"
        "    toolchain: pip\n"
        f"    virtualenv: {venv}\n"
        "main: program/\n"
    )
    (project / "program").mkdir()
    (project / "program" / "__main__.py").write_text(
        "import pulumi\n"
        "pulumi.export('edgeUrl', 'https://edge.example.test')\n"
        "pulumi.export('answer', 42)\n"
    )
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "engine-test-passphrase")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("RENDER_API_KEY", SENTINEL)
    monkeypatch.delenv("PULUMI_ACCESS_TOKEN", raising=False)
    return project


def test_preview_up_outputs_with_the_real_engine(tiny_project: Path) -> None:
    before = (tiny_project / "Pulumi.yaml").read_text()
    events: list[object] = []
    engine = open_stack(
        "dev", project_dir=tiny_project, need_render_key=False, create=True, policy=False
    )
    plan = engine.preview(on_event=events.append)
    assert [s.type for s in plan.changes] == ["pulumi:pulumi:Stack"]
    assert plan.summary.get("create") == 1
    assert events, "the engine streamed no events"
    result = engine.up()
    assert result.outputs == {"edgeUrl": "https://edge.example.test", "answer": 42}
    assert engine.outputs()["answer"] == 42
    again = engine.preview()
    assert not again.has_changes
    # The Automation API never rewrote the project file.
    assert (tiny_project / "Pulumi.yaml").read_text() == before
    assert SENTINEL not in json.dumps(plan.to_json())
