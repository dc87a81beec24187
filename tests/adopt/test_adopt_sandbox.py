"""The sandbox plays production: one running instance with its Postgres and Key Value (real
processes, Render-shaped control plane). `adopt` writes a stack file from which `plan` imports
the three with no change and creates instance 2 and the edge; nothing is replaced."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
from typer.testing import CliRunner

from koinonia_infra.adopt import core
from koinonia_infra.cli import app
from koinonia_infra.deploy.stackfile import settings_of_text
from koinonia_infra.descriptor import Descriptor
from koinonia_infra.plan import plan_stack
from koinonia_infra.render_api import RenderClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "tests" / "contract" / "schemas"
runner = CliRunner()


@pytest.fixture
def production(sandbox_state_dir: Path) -> Iterator[Descriptor]:
    from koinonia_infra.sandbox.lifecycle import down, up

    result = up(sandbox_state_dir, 1, timing="fast")
    try:
        yield result.descriptor
    finally:
        down(sandbox_state_dir)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(REPO / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(tmp_path))
    return tmp_path / "Pulumi.prod.yaml"


def _valid(name: str, instance: Any) -> None:
    schema = json.loads((CONTRACT / f"{name}.json").read_text(encoding="utf-8"))
    problems = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(instance)]
    assert not problems, f"{name}: {problems}"


def _client(descriptor: Descriptor) -> RenderClient:
    assert descriptor.render_api_key is not None
    return RenderClient(descriptor.render_api_url, descriptor.render_api_key.get_secret_value())


def test_the_control_plane_answers_datastores_like_render(production: Descriptor) -> None:
    assert production.render_api_key is not None
    headers = {"Authorization": f"Bearer {production.render_api_key.get_secret_value()}"}
    base = str(production.render_api_url)
    listed = httpx.get(f"{base}/postgres", headers=headers).json()
    _valid("postgres-list", listed)
    pg = httpx.get(f"{base}/postgres/{production.postgres_id}", headers=headers).json()
    _valid("postgres-detail", pg)
    assert pg["owner"]["id"].startswith("tea-")
    assert "ownerId" not in pg
    kvs = httpx.get(f"{base}/key-value", headers=headers).json()
    _valid("key-value-list", kvs)
    kv = httpx.get(f"{base}/key-value/{production.key_value_id}", headers=headers).json()
    _valid("key-value-detail", kv)
    assert kv["options"] == {"maxmemoryPolicy": "allkeys_lru"}
    assert httpx.get(f"{base}/postgres/dpg-nope", headers=headers).status_code == 404
    assert httpx.get(f"{base}/postgres", headers={}).status_code == 401


def test_adopt_the_sandbox_then_plan_imports_three_and_creates_two(
    production: Descriptor, sandbox_state_dir: Path, project: Path
) -> None:
    args = ["adopt", "--target", "sandbox", "--state-dir", str(sandbox_state_dir), "--yes"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    instance_1 = production.instances[0].service_id
    text = project.read_text()
    assert f"1: {instance_1}" in text
    assert f"importId: {production.postgres_id}" in text
    assert f"importId: {production.key_value_id}" in text

    # `plan` (the program under Pulumi's mocks) adopts the three and creates the rest.
    plan = runner.invoke(app, ["plan", "--stack", "prod"])
    assert plan.exit_code == 0, plan.output
    adopted = {r.logical_name: r.import_id for r in plan_stack("prod").resources if r.import_id}
    assert adopted == {
        "postgres": production.postgres_id,
        "key-value": production.key_value_id,
        "api-1": instance_1,
    }

    # Each import compared with what pulumi-render reads back from the live GET answers.
    settings = settings_of_text(text, source=str(project))
    with _client(production) as client:
        live = core.find_live(client, core.Names.of(settings))
    steps = {s.logical_name: s for s in core.adoption_steps(settings, live, stack="prod")}
    assert {n: s.op for n, s in steps.items()} == {
        "postgres": "import",
        "key-value": "import",
        "api-1": "import",
        "api-2": "create",
        "edge": "create",
    }
    for name in ("postgres", "key-value", "api-1"):
        diff = steps[name].diff
        assert diff is not None
        assert diff.no_change, (name, diff)
    assert core.unsafe_steps(list(steps.values())) == []

    check = runner.invoke(
        app, ["adopt", "--check", "--target", "sandbox", "--state-dir", str(sandbox_state_dir)]
    )
    assert check.exit_code == 0, check.output
