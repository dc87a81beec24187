"""Hostile or broken stack files: refused with one line naming what and where, exit 2.

Every reader of a stack or project file (plan, destroy-instance's round-trip edit, the engine's
backend lookup) goes through the same strict loader, which is as strict as the Pulumi engine's
own YAML reader (gopkg.in/yaml.v3: duplicate mapping keys are an error).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.errors import ConfigError
from koinonia_infra.settings import MAX_INSTANCE, load_settings

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

HEAD = "config:\n  koinonia:ownerId: tea-abc123\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(tmp_path))
    monkeypatch.delenv("KOINONIA_DEBUG", raising=False)
    return tmp_path


def plan(project: Path, body: str) -> tuple[int, list[str]]:
    (project / "Pulumi.hostile.yaml").write_text(body, encoding="utf-8")
    result = runner.invoke(app, ["plan", "--stack", "hostile", "--format", "json"])
    return result.exit_code, result.stderr.splitlines()


def test_duplicate_key_is_refused_naming_both_lines(project: Path) -> None:
    # A bad merge: the second `region` would recreate the datastores in Frankfurt.
    body = (
        HEAD + "  koinonia:region: oregon\n"
        "  koinonia:api:\n"
        "    instances: [1, 2]\n"
        "  koinonia:region: frankfurt\n"
    )
    code, lines = plan(project, body)
    assert code == 2
    assert len(lines) == 1, lines
    assert "Pulumi.hostile.yaml" in lines[0]
    assert "line 6" in lines[0]
    assert "already defined at line 3" in lines[0]
    assert "koinonia:region" in lines[0]


def test_duplicate_nested_key_is_refused(project: Path) -> None:
    body = HEAD + "  koinonia:api:\n    instances: [1, 2]\n    plan: pro\n    instances: [1]\n"
    code, lines = plan(project, body)
    assert code == 2
    assert len(lines) == 1, lines
    assert "'instances' already defined at line 4" in lines[0]


def test_same_key_in_different_mappings_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.ok.yaml"
    path.write_text(
        HEAD + "  koinonia:postgres: {name: db}\n  koinonia:keyValue: {name: cache}\n",
        encoding="utf-8",
    )
    assert load_settings(path).postgres.name == "db"


def test_deep_nesting_is_one_line_not_a_traceback(project: Path) -> None:
    body = HEAD + "  koinonia:api: " + "[" * 500 + "]" * 500 + "\n"
    code, lines = plan(project, body)
    assert code == 2
    assert len(lines) == 1, lines[:5]
    assert "nested more than" in lines[0]


def test_deep_block_nesting_is_one_line(project: Path) -> None:
    body = HEAD + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(500))
    code, lines = plan(project, body)
    assert code == 2
    assert len(lines) == 1, lines[:5]
    assert "nested more than" in lines[0]


def test_control_characters_are_refused_and_never_echoed(project: Path) -> None:
    code, lines = plan(project, HEAD + "  koinonia:region: \x1b[2J\x1b[Horegon\n")
    assert code == 2
    assert len(lines) == 1, lines
    assert "U+001B" in lines[0]
    assert not any("\x1b" in line for line in lines)


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        ("[true, 2]", "koinonia:api.instances.0: Input should be a valid integer"),
        ("[1, 99999999999999999999]", f"instance numbers run from 1 to {MAX_INSTANCE}"),
        (f"[1, {MAX_INSTANCE + 1}]", f"instance numbers run from 1 to {MAX_INSTANCE}"),
        ('["1", 2]', "koinonia:api.instances.0: Input should be a valid integer"),
        ("[1.0, 2]", "koinonia:api.instances.0: Input should be a valid integer"),
    ],
)
def test_instances_are_whole_numbers_within_the_bound(
    project: Path, instances: str, expected: str
) -> None:
    code, lines = plan(project, HEAD + f"  koinonia:api:\n    instances: {instances}\n")
    assert code == 2
    assert any(expected in line for line in lines), lines


def test_import_ids_keys_are_not_booleans(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.b.yaml"
    path.write_text(HEAD + "  koinonia:api:\n    importIds: {true: srv-abc}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any("importIds" in line for line in info.value.lines)


def test_plan_at_the_instance_bound(project: Path) -> None:
    # At the bound `plan` runs the real program for every instance: it completes (measured:
    # ~3 s and ~100 MB for 100 instances; README "Configuration").
    numbers = ", ".join(str(n) for n in range(1, MAX_INSTANCE + 1))
    body = HEAD + f"  koinonia:api:\n    instances: [{numbers}]\n"
    (project / "Pulumi.big.yaml").write_text(body, encoding="utf-8")
    result = runner.invoke(app, ["plan", "--stack", "big", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    names = {r["logicalName"] for r in json.loads(result.stdout)["resources"]}
    assert {f"api-{n}" for n in (1, MAX_INSTANCE)} <= names


def test_destroy_instance_edit_refuses_duplicates_like_plan() -> None:
    from koinonia_infra.deploy.stackfile import remove_instance

    body = HEAD + "  koinonia:api:\n    instances: [1, 2]\n    instances: [1, 2, 3]\n"
    with pytest.raises(ConfigError) as info:
        remove_instance(body, 2, source="Pulumi.prod.yaml")
    assert "already defined at line 4" in str(info.value)
    assert "\n" not in str(info.value)


def test_engine_reads_stack_and_project_files_strictly(tmp_path: Path) -> None:
    from koinonia_infra.deploy.engine import _read_yaml

    path = tmp_path / "Pulumi.yaml"
    path.write_text("name: koinonia\nbackend:\n  url: file://a\nbackend:\n  url: s3://b\n")
    with pytest.raises(ConfigError) as info:
        _read_yaml(path)
    assert "'backend' already defined at line 2" in str(info.value)


# ---- descriptors (JSON): the same rules -------------------------------------------------------

DESCRIPTOR = (
    '{"edgeUrl": "http://127.0.0.1:1", "instances": [{"number": 1, "name": "a", '
    '"serviceId": "s", "url": "u", "privateAddress": "p"}]'
)


def verify_outputs(path: Path, text: str) -> tuple[int, list[str]]:
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["verify", "--outputs", str(path)])
    return result.exit_code, result.stderr.splitlines()


def test_descriptor_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    text = DESCRIPTOR + ', "renderApiUrl": "https://a.example", "renderApiUrl": "https://b"}'
    code, lines = verify_outputs(tmp_path / "outputs.json", text)
    assert code == 2
    assert lines == [
        f"error: {tmp_path / 'outputs.json'}: not valid JSON: key 'renderApiUrl' given twice"
    ]


def test_deeply_nested_descriptor_is_one_line(tmp_path: Path) -> None:
    text = DESCRIPTOR + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"
    code, lines = verify_outputs(tmp_path / "outputs.json", text)
    assert code == 2
    assert len(lines) == 1, lines[:3]
    assert "nested too deeply" in lines[0]


def test_a_hostile_list_gives_a_bounded_number_of_lines(project: Path) -> None:
    junk = ", ".join(["x"] * 5000)
    code, lines = plan(project, HEAD + f"  koinonia:api:\n    instances: [{junk}]\n")
    assert code == 2
    assert len(lines) <= 22, len(lines)
    assert lines[-1].endswith("more problem(s)")
