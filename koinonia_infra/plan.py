"""`plan`: what a stack declares, offline, with an estimated monthly cost.

The real program is evaluated in-process under Pulumi's mock runtime (no Pulumi CLI, no
credentials, no network); everything shown is derived from what it registered, never from a
second description of the infrastructure.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from koinonia_infra.errors import ConfigError
from koinonia_infra.program.mocks import (
    MOCK_CONNECTION,
    Evaluation,
    Registration,
    Secret,
    evaluate,
    redact,
    reveal,
)
from koinonia_infra.settings import NAMESPACE, Settings, read_stack_config, settings_from_config

WEB_SERVICE = "render:services:WebService"
ENV_VARS = "render:services:EnvVarsForService"
POSTGRES = "render:postgres:Postgres"
KEY_VALUE = "render:key-value:KeyValue"
SECRET_MARKER = "[secret]"


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    as_of: dt.date = Field(alias="asOf")
    currency: str = "USD"
    source: str = ""
    web: dict[str, float] = Field(default_factory=dict)
    postgres: dict[str, float] = Field(default_factory=dict)
    key_value: dict[str, float] = Field(default_factory=dict, alias="keyValue")

    def monthly(self, resource_type: str, plan: str) -> float | None:
        table = {WEB_SERVICE: self.web, POSTGRES: self.postgres, KEY_VALUE: self.key_value}
        return table.get(resource_type, {}).get(plan)


def load_prices(path: Path | None = None) -> PriceTable:
    """The shipped price table, or `path` (same layout); problems are a ConfigError."""
    source = str(path) if path else "koinonia_infra/prices.toml"
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path
            else resources.files("koinonia_infra").joinpath("prices.toml").read_text("utf-8")
        )
    except FileNotFoundError:
        raise ConfigError(f"--prices {source}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--prices {source}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--prices {source}: not valid TOML: {exc}") from None
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{source}: {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(f"invalid price table {source}", lines=lines) from None


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostItem:
    logical_name: str
    plan: str
    usd: float | None


@dataclass(frozen=True)
class Connection:
    """A service receiving a datastore's connection string through its env resource."""

    service: str  # Render name of the receiving service
    env_key: str
    datastore: str  # Render name of the datastore
    network: str  # "internal" (private network) or "external"


@dataclass
class Plan:
    stack: str
    settings: Settings
    resources: list[Registration]
    prices: PriceTable
    cost_items: list[CostItem]
    connections: list[Connection]
    upstreams: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return round(sum(item.usd or 0.0 for item in self.cost_items), 2)


_TYPE_ORDER = {POSTGRES: 0, KEY_VALUE: 1, WEB_SERVICE: 2, ENV_VARS: 3}


def _reading_order(res: Registration) -> tuple[int, list[Any]]:
    # Datastores, then services (api-2 before api-10), then env resources.
    natural = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", res.logical_name)]
    return _TYPE_ORDER.get(res.type, 9), natural


def plan_of(res: Registration) -> str | None:
    if res.type == WEB_SERVICE:
        details = res.inputs.get("serviceDetails")
        value = details.get("plan") if isinstance(details, dict) else None
    else:
        value = res.inputs.get("plan")
    return value if isinstance(value, str) else None


def cost_items(resources: list[Registration], prices: PriceTable) -> list[CostItem]:
    items = []
    for res in resources:
        plan = plan_of(res)
        if plan is not None and res.type in (WEB_SERVICE, POSTGRES, KEY_VALUE):
            items.append(CostItem(res.logical_name, plan, prices.monthly(res.type, plan)))
    return items


def env_entries(res: Registration) -> list[tuple[str, Any]]:
    entries = res.inputs.get("envVars")
    if not isinstance(entries, list):
        return []
    return [(str(e.get("key")), e.get("value")) for e in entries if isinstance(e, dict)]


def connections(resources: list[Registration]) -> list[Connection]:
    """Which service gets which datastore's connection string, read from the registered env
    resources: the mocks' connection strings name the datastore they were issued for."""
    by_id = {res.id: res for res in resources}
    by_logical = {res.logical_name: res for res in resources}
    found = []
    for res in resources:
        if res.type != ENV_VARS:
            continue
        target = by_id.get(str(res.inputs.get("serviceId")))
        service = (target.render_name if target else None) or str(res.inputs.get("serviceId"))
        for key, value in env_entries(res):
            plain = reveal(value)
            if not (isinstance(plain, str) and plain.startswith(MOCK_CONNECTION)):
                continue
            _kind, logical, network = plain.removeprefix(MOCK_CONNECTION).split("/", 2)
            store = by_logical.get(logical)
            name = (store.render_name if store else None) or logical
            found.append(Connection(service, key, name, network))
    return found


def edge_upstreams(resources: list[Registration]) -> list[str]:
    """The upstreams in the Caddyfile the edge was registered with."""
    from koinonia_infra.program.edge import CADDYFILE_ENV

    for res in resources:
        for key, value in env_entries(res):
            if key == CADDYFILE_ENV:
                text = reveal(value)
                match = re.search(r"reverse_proxy ([^{\n]+)\{", str(text))
                return match.group(1).split() if match else []
    return []


def build_plan(
    settings: Settings,
    *,
    stack: str,
    prices: PriceTable,
    missing_secrets: list[str] | None = None,
) -> Plan:
    evaluation: Evaluation = evaluate(settings, stack=stack)
    resources = sorted(evaluation.resources, key=_reading_order)
    items = cost_items(resources, prices)
    warnings = [
        f"{NAMESPACE}:{key} has no secure value in the stack file; set it with "
        f"`pulumi config set --secret {NAMESPACE}:{key} --stack {stack}`"
        for key in missing_secrets or []
    ]
    warnings += [
        f"no price for {item.logical_name} (plan {item.plan}) in the price table; "
        "not counted in the total"
        for item in items
        if item.usd is None
    ]
    return Plan(
        stack=stack,
        settings=settings,
        resources=resources,
        prices=prices,
        cost_items=items,
        connections=connections(resources),
        upstreams=edge_upstreams(resources),
        warnings=warnings,
    )


def plan_stack(stack: str, *, prices_file: Path | None = None) -> Plan:
    """Read `Pulumi.<stack>.yaml`, evaluate the program under mocks, price it."""
    from koinonia_infra.project import stack_path
    from koinonia_infra.pulumi_config import check_stack

    path = stack_path(stack)
    config = read_stack_config(path)
    settings = settings_from_config(config, source=str(path))
    # After our own field-by-field messages: what the engine itself would refuse.
    check_stack(path)
    prices = load_prices(prices_file)
    missing = [key for key in settings.api.secret_env if key not in config]
    return build_plan(settings, stack=stack, prices=prices, missing_secrets=missing)


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "stack": plan.stack,
        "resources": [
            {
                "type": res.type,
                "logicalName": res.logical_name,
                "name": res.render_name,
                "protect": res.protect,
                "inputs": redact(res.inputs, SECRET_MARKER),
            }
            for res in plan.resources
        ],
        "monthlyCost": {
            "currency": plan.prices.currency,
            "total": plan.total_usd,
            "pricesAsOf": plan.prices.as_of.isoformat(),
            "items": [
                {"logicalName": i.logical_name, "plan": i.plan, "usd": i.usd}
                for i in plan.cost_items
            ],
        },
    }


def is_secret(value: Any) -> bool:
    return isinstance(value, Secret)
