"""`plan` as a library: JSON derived from what the program registered, cost, warnings."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pulumi_render as render
import pytest

from koinonia_infra import program
from koinonia_infra.errors import ConfigError
from koinonia_infra.plan import PriceTable, build_plan, load_prices, plan_json, plan_stack
from koinonia_infra.program.mocks import MOCK_CONNECTION
from koinonia_infra.settings import settings_from_config

ROOT = Path(__file__).resolve().parents[1]
RESOURCE_KEYS = {"type", "logicalName", "name", "protect", "inputs"}

PRICES = PriceTable.model_validate(
    {
        "asOf": "2030-01-02",
        "web": {"starter": 1.0, "standard": 10.0},
        "postgres": {"basic_1gb": 100.0},
        "keyValue": {"starter": 1000.0},
    }
)


def settings(**api: Any) -> Any:
    return settings_from_config(
        {"ownerId": "tea-testowner0001", "api": {"secretEnv": ["JWT_SECRET"], **api}},
        source="test",
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(ROOT / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(tmp_path))
    return tmp_path


def test_json_has_the_documented_shape() -> None:
    data = plan_json(build_plan(settings(), stack="prod", prices=PRICES))
    assert list(data) == ["stack", "resources", "monthlyCost"]
    assert data["stack"] == "prod"
    for res in data["resources"]:
        assert set(res) == RESOURCE_KEYS
    api2 = next(r for r in data["resources"] if r["logicalName"] == "api-2")
    assert api2["type"] == "render:services:WebService"
    assert api2["name"] == "koinonia-sms-backend-2"
    assert api2["protect"] is False
    assert api2["inputs"]["serviceDetails"]["healthCheckPath"] == "/health"
    assert set(data["monthlyCost"]) == {"currency", "total", "pricesAsOf", "items"}
    json.dumps(data)  # serialisable as is


def test_json_lists_what_the_program_registered() -> None:
    result = build_plan(settings(instances=[1, 2, 7]), stack="prod", prices=PRICES)
    logical = [r["logicalName"] for r in plan_json(result)["resources"]]
    assert sorted(logical) == sorted(r.logical_name for r in result.resources)
    assert {"api-7", "api-7-env"} <= set(logical)
    protected = {r["logicalName"] for r in plan_json(result)["resources"] if r["protect"]}
    assert protected == {"postgres", "key-value"}


def _key_orders(value: Any) -> list[list[str]]:
    if isinstance(value, dict):
        return [list(value), *(o for v in value.values() for o in _key_orders(v))]
    if isinstance(value, list):
        return [o for v in value for o in _key_orders(v)]
    return []


def test_json_is_stable_run_to_run() -> None:
    first = json.dumps(plan_json(build_plan(settings(), stack="prod", prices=PRICES)))
    second = json.dumps(plan_json(build_plan(settings(), stack="prod", prices=PRICES)))
    assert first == second
    for resource in json.loads(first)["resources"]:
        for keys in _key_orders(resource["inputs"]):
            assert keys == sorted(keys), keys
    order = [r["logicalName"] for r in json.loads(first)["resources"]]
    assert order == [
        "postgres", "key-value", "api-1", "api-2", "edge", "api-1-env", "api-2-env", "edge-env"
    ]  # fmt: skip


def test_json_comes_from_the_registrations_not_a_description(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whatever the program registers shows up, with no second description to update.
    real_build = program.build

    def build_with_an_extra_cache(s: Any) -> None:
        real_build(s)
        render.key_value.KeyValue(
            "extra-cache",
            name="koinonia-extra",
            owner_id=s.owner_id,
            plan=render.key_value.Plan.STARTER,
            opts=pulumi.ResourceOptions(protect=True),
        )

    monkeypatch.setattr(program, "build", build_with_an_extra_cache)
    data = plan_json(build_plan(settings(), stack="prod", prices=PRICES))
    extra = next(r for r in data["resources"] if r["logicalName"] == "extra-cache")
    assert (extra["type"], extra["name"], extra["protect"]) == (
        "render:key-value:KeyValue",
        "koinonia-extra",
        True,
    )
    assert extra["inputs"]["plan"] == "starter"
    assert {"logicalName": "extra-cache", "plan": "starter", "usd": 1000.0} in data["monthlyCost"][
        "items"
    ]


def test_secrets_are_redacted_everywhere() -> None:
    result = build_plan(settings(), stack="prod", prices=PRICES)
    text = json.dumps(plan_json(result))
    assert MOCK_CONNECTION not in text
    assert "[unset]" not in text
    env = next(r for r in plan_json(result)["resources"] if r["logicalName"] == "api-1-env")
    values = {e["key"]: e["value"] for e in env["inputs"]["envVars"]}
    assert values["DATABASE_URL"] == "[secret]"
    assert values["REDIS_URL"] == "[secret]"
    assert values["JWT_SECRET"] == "[secret]"
    assert values["KOINONIA_INSTANCE"] == "1"


def test_cost_uses_the_price_table_per_registered_plan() -> None:
    result = build_plan(settings(plan="standard"), stack="prod", prices=PRICES)
    cost = plan_json(result)["monthlyCost"]
    items = {i["logicalName"]: (i["plan"], i["usd"]) for i in cost["items"]}
    assert items == {
        "api-1": ("standard", 10.0),
        "api-2": ("standard", 10.0),
        "edge": ("starter", 1.0),
        "postgres": ("basic_1gb", 100.0),
        "key-value": ("starter", 1000.0),
    }
    assert cost["total"] == 1121.0
    assert cost["pricesAsOf"] == "2030-01-02"
    assert cost["currency"] == "USD"


def test_unpriced_plan_is_a_warning_not_a_guess() -> None:
    result = build_plan(settings(plan="pro_max"), stack="prod", prices=PRICES)
    items = {i.logical_name: i.usd for i in result.cost_items}
    assert items["api-1"] is None
    assert result.total_usd == 1101.0
    assert any("no price for api-1 (plan pro_max)" in w for w in result.warnings)


def test_connections_show_which_datastore_feeds_which_service() -> None:
    result = build_plan(settings(), stack="prod", prices=PRICES)
    seen = sorted((c.service, c.env_key, c.datastore, c.network) for c in result.connections)
    assert seen == [
        ("koinonia-sms-backend", "DATABASE_URL", "koinonia-db", "internal"),
        ("koinonia-sms-backend", "REDIS_URL", "koinonia-cache", "internal"),
        ("koinonia-sms-backend-2", "DATABASE_URL", "koinonia-db", "internal"),
        ("koinonia-sms-backend-2", "REDIS_URL", "koinonia-cache", "internal"),
    ]


def test_upstreams_follow_the_declared_instances() -> None:
    result = build_plan(settings(instances=[2, 3]), stack="prod", prices=PRICES)
    assert result.upstreams == ["koinonia-sms-backend-2:8080", "koinonia-sms-backend-3:8080"]


def test_shipped_price_table_is_dated_and_covers_the_prod_plans(project: Path) -> None:
    prices = load_prices()
    assert prices.as_of <= dt.date.today()
    result = plan_stack("prod")
    assert all(item.usd is not None for item in result.cost_items)
    assert not any("no price" in w for w in result.warnings)


def test_missing_secure_values_warn_with_the_command(project: Path) -> None:
    result = plan_stack("prod")
    assert (
        "koinonia:JWT_SECRET has no secure value in the stack file; set it with "
        "`pulumi config set --secret koinonia:JWT_SECRET --stack prod`"
    ) in result.warnings


def test_secure_value_present_means_no_warning(project: Path) -> None:
    stack = project / "Pulumi.prod.yaml"
    stack.write_text(
        stack.read_text() + "  koinonia:JWT_SECRET:\n    secure: AAABAHcipherTextOnly\n"
    )
    result = plan_stack("prod")
    assert not any("JWT_SECRET" in w for w in result.warnings)
    assert any("TWILIO_AUTH_TOKEN" in w for w in result.warnings)


def test_prices_file_overrides(project: Path) -> None:
    custom = project / "prices.toml"
    custom.write_text(
        'asOf = 2031-05-06\ncurrency = "EUR"\n[web]\nstandard = 2.5\nstarter = 1\n'
        "[postgres]\nbasic_1gb = 3\n[keyValue]\nstarter = 4\n"
    )
    data = plan_json(plan_stack("prod", prices_file=custom))["monthlyCost"]
    assert (data["currency"], data["pricesAsOf"], data["total"]) == ("EUR", "2031-05-06", 13.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("asOf = 2030-01-01\n[web]\nstarter = 'seven'\n", "web.starter"),
        ("currency = 'USD'\n", "asOf: Field required"),
        ("asOf = 2030-01-01\nwebb = {}\n", "webb: Extra inputs are not permitted"),
    ],
)
def test_bad_price_file_is_a_config_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_prices(path)
    assert any(expected in line for line in err.value.lines), err.value.lines


def test_unreadable_price_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_prices(tmp_path / "absent.toml")
    (tmp_path / "broken.toml").write_text("asOf = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_prices(tmp_path / "broken.toml")
