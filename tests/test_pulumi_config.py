"""Pulumi.yaml and every stack file against the Pulumi engine's own config rules.

The rules are the engine's (pulumi/pulumi `pkg/workspace/config.go` mergeConfig and
`sdk/go/common/workspace/project.go`), not ours: a declared key without default that a stack
does not set stops `preview`/`up` before the program runs. `tests/data/pulumi-project.schema.json`
is the engine's JSON schema for Pulumi.yaml (`sdk/go/common/workspace/project.json`, pulumi/pulumi
commit 1b5949891b3cefcb9974752b24a5ecef0acc86c8), which the engine validates Pulumi.yaml against.

Stack files that tests and benchmarks generate go through `plan`/`preview`/`up`, which run the
same check (`check_stack`) before anything else: an invalid generated stack fails there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.errors import ConfigError
from koinonia_infra.pulumi_config import (
    check_stack,
    project_problems,
    stack_problems,
    value_has_type,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).parent / "data" / "pulumi-project.schema.json"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _stack_files() -> list[Path]:
    return sorted(ROOT.glob("Pulumi.*.yaml"))


def test_the_repository_has_stack_files_to_check() -> None:
    assert [p.name for p in _stack_files()] == ["Pulumi.prod.yaml"]


def test_pulumi_yaml_validates_against_the_engines_project_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(_yaml(ROOT / "Pulumi.yaml"))


def test_pulumi_yaml_passes_the_engines_project_validation() -> None:
    assert project_problems(_yaml(ROOT / "Pulumi.yaml")) == []


@pytest.mark.parametrize("stack_file", _stack_files(), ids=lambda p: p.name)
def test_every_stack_file_in_the_repository_is_accepted_by_the_engine_rules(
    stack_file: Path,
) -> None:
    stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    assert stack_problems(_yaml(ROOT / "Pulumi.yaml"), _yaml(stack_file), stack) == []
    check_stack(stack_file)


def test_only_the_owner_id_is_declared_without_a_default() -> None:
    # Everything else has a default in the settings; a stack must name its Render workspace.
    declared = _yaml(ROOT / "Pulumi.yaml")["config"]
    required = sorted(k for k, d in declared.items() if "default" not in d and "value" not in d)
    assert required == ["koinonia:ownerId"]


def test_a_section_declared_without_default_and_unset_is_missing_as_the_engine_says() -> None:
    # The state of the project before every section got its default: the engine's exact words.
    project = _yaml(ROOT / "Pulumi.yaml")
    project["config"]["koinonia:verify"].pop("default")
    stack = _yaml(ROOT / "Pulumi.prod.yaml")
    problems = stack_problems(project, stack, "prod")
    assert problems == ["Stack 'prod' is missing configuration value 'koinonia:verify'"]
    project["config"]["koinonia:edge"].pop("default")
    del stack["config"]["koinonia:edge"]
    assert stack_problems(project, stack, "prod") == [
        "Stack 'prod' is missing configuration values 'koinonia:edge', 'koinonia:verify'"
    ]


def _project(**config: Any) -> dict[str, Any]:
    return {"name": "koinonia", "runtime": "python", "config": config}


@pytest.mark.parametrize(
    ("declared", "value", "message"),
    [
        ({"type": "object", "default": {}}, [1, 2], "must be of type 'object'"),
        ({"type": "integer", "default": 1}, "ten", "must be of type 'integer'"),
        ({"type": "boolean", "default": True}, "yes", "must be of type 'boolean'"),
        (
            {"type": "array", "items": {"type": "integer"}, "default": [1]},
            [1, "two"],
            "must be of type 'array<integer>'",
        ),
        ({"type": "string", "default": "a", "secret": True}, "plain", "must be encrypted"),
    ],
)
def test_a_stack_value_of_the_wrong_type_is_named(
    declared: dict[str, Any], value: Any, message: str
) -> None:
    problems = stack_problems(
        _project(**{"koinonia:key": declared}), {"config": {"koinonia:key": value}}, "dev"
    )
    assert len(problems) == 1
    assert "'koinonia:key'" in problems[0]
    assert message in problems[0]


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("integer", "42"),
        ("integer", "-3"),
        ("integer", 7),
        ("integer", 2.0),
        ("boolean", "true"),
        ("boolean", False),
        ("string", "5"),
        ("object", {}),
    ],
)
def test_values_the_engine_accepts(type_name: str, value: Any) -> None:
    assert value_has_type(type_name, None, value)


@pytest.mark.parametrize(
    ("type_name", "value"), [("integer", "4.5"), ("integer", " 4"), ("integer", ""), ("boolean", 1)]
)
def test_values_the_engine_refuses(type_name: str, value: Any) -> None:
    assert not value_has_type(type_name, None, value)


def test_scalars_in_a_stack_file_reach_the_engine_as_strings() -> None:
    # `koinonia:port: 8080` in a stack is the string "8080": fine for an integer or a string.
    project = _project(
        **{"koinonia:n": {"type": "integer"}, "koinonia:s": {"type": "string"}},
    )
    assert stack_problems(project, {"config": {"koinonia:n": 8080, "koinonia:s": 5}}, "x") == []


def test_bare_keys_are_qualified_with_the_project_name() -> None:
    project = _project(**{"koinonia:a": {"type": "string"}})
    assert stack_problems(project, {"config": {"a": "set"}}, "x") == []


def test_project_declaration_mistakes_the_engine_refuses() -> None:
    problems = project_problems(
        _project(
            **{
                "koinonia:both": {"type": "string", "default": "a", "value": "b"},
                "koinonia:list": {"type": "array"},
                "koinonia:bad": {"type": "integer", "default": "x"},
                "render:apiKey": {"type": "string", "value": "v"},
                "render:region": {"default": "oregon"},
            }
        )
    )
    assert len(problems) == 5
    assert any("'koinonia:both' cannot have both" in p for p in problems)
    assert any("'koinonia:list' declares an array" in p for p in problems)
    assert any("'koinonia:bad' is not of the expected type 'integer'" in p for p in problems)
    assert any("'render:apiKey' is not namespaced by the project" in p for p in problems)
    assert any("'render:region'" in p and "default" in p for p in problems)


def test_shorthand_values_are_defaults_for_the_project_and_values_for_others() -> None:
    project = _project(**{"koinonia:size": "small", "aws:region": "us-west-2"})
    assert project_problems(project) == []
    assert stack_problems(project, {"config": {}}, "x") == []


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(tmp_path))
    return tmp_path


def test_plan_refuses_a_stack_the_engine_would_refuse_naming_key_and_file(
    project_dir: Path,
) -> None:
    project = _yaml(project_dir / "Pulumi.yaml")
    project["config"]["koinonia:verify"].pop("default")
    (project_dir / "Pulumi.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
    shutil.copy(ROOT / "Pulumi.prod.yaml", project_dir / "Pulumi.prod.yaml")
    result = CliRunner().invoke(app, ["plan", "--stack", "prod"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Pulumi.prod.yaml" in lines[0]
    assert "missing configuration value 'koinonia:verify'" in lines[0]
    assert "Traceback" not in result.output


def test_preview_checks_the_stack_before_it_needs_the_engine(project_dir: Path) -> None:
    from koinonia_infra.deploy.engine import open_stack

    (project_dir / "Pulumi.dev.yaml").write_text("config:\n  koinonia:region: oregon\n")
    with pytest.raises(ConfigError, match="missing configuration value 'koinonia:ownerId'"):
        open_stack("dev", project_dir=project_dir)
