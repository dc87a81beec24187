"""`koinonia-infra plan` through the real typer app."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from koinonia_infra.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(ROOT / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(tmp_path))
    monkeypatch.delenv("KOINONIA_DEBUG", raising=False)
    return tmp_path


def test_table_view(project: Path) -> None:
    result = runner.invoke(app, ["plan"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for expected in (
        "stack prod",
        "api-1  koinonia-sms-backend  web service standard",
        "api-2  koinonia-sms-backend-2  web service standard",
        "postgres  koinonia-db  postgres basic_1gb",
        "protected, retained on delete",
        "DATABASE_URL ← koinonia-db (internal connection string)",
        "REDIS_URL ← koinonia-cache (internal connection string)",
        "KOINONIA_CADDYFILE: round robin over 2 upstreams",
        "upstream koinonia-sms-backend:8080\n",
        "upstream koinonia-sms-backend-2:8080\n",
        "Estimated monthly cost",
        "prices as of ",
        "total",
    ):
        assert expected in out, expected
    assert "mock-connection" not in out
    assert "pulumi config set --secret koinonia:JWT_SECRET --stack prod" in result.stderr


def test_json_view_on_stdout_only(project: Path) -> None:
    result = runner.invoke(app, ["plan", "--stack", "prod", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # nothing but JSON on stdout
    assert data["stack"] == "prod"
    names = {r["logicalName"]: r["name"] for r in data["resources"]}
    assert names["api-1"] == "koinonia-sms-backend"
    assert names["api-2"] == "koinonia-sms-backend-2"
    assert data["monthlyCost"]["total"] == sum(i["usd"] for i in data["monthlyCost"]["items"])
    assert "[secret]" in result.stdout
    assert "mock-connection" not in result.stdout


def test_prices_option(project: Path) -> None:
    prices = project / "p.toml"
    prices.write_text("asOf = 2031-01-01\n[web]\nstandard = 1\nstarter = 1\n")
    result = runner.invoke(app, ["plan", "--format", "json", "--prices", str(prices)])
    assert result.exit_code == 0, result.stderr
    cost = json.loads(result.stdout)["monthlyCost"]
    assert (cost["pricesAsOf"], cost["total"]) == ("2031-01-01", 3.0)
    assert "no price for postgres (plan basic_1gb)" in result.stderr


BAD_STACK = """\
config:
  koinonia:ownerId: tea-testowner0001
  koinonia:api:
    instances: [1, 1]
    port: 10000
    plann: standard
"""


def test_bad_stack_file_exit_2_one_line_per_problem(project: Path) -> None:
    (project / "Pulumi.bad.yaml").write_text(BAD_STACK)
    result = runner.invoke(app, ["plan", "--stack", "bad"])
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines() if "koinonia:api." in line]
    assert len(lines) == 3, result.stderr
    assert any("koinonia:api.instances: duplicate instance number(s) [1]" in x for x in lines)
    assert any("koinonia:api.port: port 10000 is reserved" in x for x in lines)
    assert any("koinonia:api.plann: unknown key; did you mean 'plan'?" in x for x in lines)
    assert result.stdout == ""


def test_debug_shows_the_traceback(project: Path) -> None:
    (project / "Pulumi.bad.yaml").write_text(BAD_STACK)
    result = runner.invoke(app, ["--debug", "plan", "--stack", "bad"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert "ConfigError" in result.stderr


def test_missing_stack_and_broken_yaml(project: Path) -> None:
    result = runner.invoke(app, ["plan", "--stack", "staging"])
    assert result.exit_code == 2
    assert "Pulumi.staging.yaml: stack file not found" in result.stderr
    (project / "Pulumi.broken.yaml").write_text("config: [unclosed\n")
    result = runner.invoke(app, ["plan", "--stack", "broken"])
    assert result.exit_code == 2
    assert "not valid YAML" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_prices_file_exit_2(project: Path) -> None:
    result = runner.invoke(app, ["plan", "--prices", str(project / "nope.toml")])
    assert result.exit_code == 2
    assert "nope.toml: file not found" in result.stderr


def test_bad_format_is_a_usage_error(project: Path) -> None:
    result = runner.invoke(app, ["plan", "--format", "yaml"])
    assert result.exit_code == 2


def test_plan_command_module_does_not_import_pulumi() -> None:
    # `--help` must stay fast: pulumi is imported only when `plan` actually runs.
    code = (
        "import sys, koinonia_infra.cli.plan; "
        "sys.exit(1 if any(m == 'pulumi' or m.startswith('pulumi.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


ADOPT_STACK = """\
config:
  koinonia:ownerId: tea-testowner0001
  koinonia:api:
    instances: [1, 2]
    importIds:
      1: srv-abc1
  koinonia:postgres:
    importId: dpg-abc1-a
  koinonia:edge:
    enabled: false
"""


def test_adopted_resources_and_disabled_edge_are_visible(project: Path) -> None:
    (project / "Pulumi.adopt.yaml").write_text(ADOPT_STACK)
    result = runner.invoke(app, ["plan", "--stack", "adopt"])
    assert result.exit_code == 0, result.stderr
    assert "api-1  koinonia-sms-backend  web service standard · adopt srv-abc1" in result.stdout
    assert "api-2  koinonia-sms-backend-2  web service standard · create" in result.stdout
    assert "postgres  koinonia-db  postgres basic_1gb · adopt dpg-abc1-a" in result.stdout
    assert "key-value  koinonia-cache  key value starter · create" in result.stdout
    assert "edge disabled: the first instance is the entry point" in result.stdout
    assert "koinonia-edge" not in result.stdout
