"""Every service's first deploy runs with its full environment, and env changes never replace a
service: the env is inline at creation (ignored afterwards) and owned by EnvVarsForService."""

from __future__ import annotations

from typing import Any

import pytest
from program_helpers import evaluate_settings as run
from program_helpers import make_settings
from provider_rules import read_back_on_import, web_service_replaces

from koinonia_infra.program.edge import CADDYFILE_ENV
from koinonia_infra.program.mocks import MOCK_CONNECTION, Evaluation, Secret, reveal

WEB = "render:services:WebService"
ENV = "render:services:EnvVarsForService"


def env_of(ev: Evaluation, logical: str) -> dict[str, Any]:
    entries = ev.by_name(logical).inputs.get("envVars")
    assert isinstance(entries, list), f"{logical} registers no envVars"
    return {e["key"]: e["value"] for e in entries}


def test_each_api_service_is_created_with_its_full_environment() -> None:
    ev = run(JWT_SECRET="first-deploy-test-value")
    for k in (1, 2):
        env = env_of(ev, f"api-{k}")
        assert isinstance(env["DATABASE_URL"], Secret)
        assert isinstance(env["REDIS_URL"], Secret)
        assert isinstance(env["JWT_SECRET"], Secret)
        assert reveal(env) == {
            "DATABASE_URL": f"{MOCK_CONNECTION}postgres/postgres/internal",
            "REDIS_URL": f"{MOCK_CONNECTION}key-value/key-value/internal",
            "NODE_ENV": "production",
            "PORT": "8080",
            "KOINONIA_INSTANCE": str(k),
            "LOG_LEVEL": "info",
            "SMS_PROVIDER": "twilio",
            "JWT_SECRET": "first-deploy-test-value",
        }


def test_the_inline_environment_is_exactly_what_env_vars_for_service_puts() -> None:
    # EnvVarsForService's create PUTs the whole set: the same set means it changes nothing.
    ev = run()
    for service in ("api-1", "api-2", "edge"):
        assert env_of(ev, service) == env_of(ev, f"{service}-env"), service
        assert ev.by_name(f"{service}-env").type == ENV


def test_the_edge_is_created_with_its_caddyfile() -> None:
    ev = run(make_settings(api={"instances": [1, 2, 3]}))
    caddyfile = env_of(ev, "edge")[CADDYFILE_ENV]
    assert isinstance(caddyfile, str)
    for k in (1, 2, 3):
        assert ev.outputs["instances"][k - 1]["privateAddress"] in caddyfile
    assert "reverse_proxy" in caddyfile


def test_every_web_service_ignores_later_env_changes_and_keeps_them_secret() -> None:
    ev = run()
    services = [r for r in ev.resources if r.type == WEB]
    assert sorted(r.logical_name for r in services) == ["api-1", "api-2", "edge"]
    for res in services:
        assert "envVars" in res.ignore_changes, res.logical_name
        assert "envVars" in res.additional_secret_outputs, res.logical_name


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"api": {"env": {"LOG_LEVEL": "info"}}}, {"api": {"env": {"LOG_LEVEL": "debug"}}}),
        ({"api": {"port": 8080}}, {"api": {"port": 9000}}),
        ({"api": {"instances": [1, 2]}}, {"api": {"instances": [1, 2, 3]}}),  # new Caddyfile
    ],
)
def test_an_env_change_replaces_no_service(before: dict[str, Any], after: dict[str, Any]) -> None:
    old, new = run(make_settings(**before)), run(make_settings(**after))
    existing = {r.logical_name for r in old.resources}
    env_changed = []
    for res in new.resources:
        if res.type != WEB or res.logical_name not in existing:
            continue
        olds = old.by_name(res.logical_name).inputs
        assert web_service_replaces(olds, res.inputs, res.ignore_changes) == [], res.logical_name
        # The rule bites: without ignore_changes this service would be replaced.
        if web_service_replaces(olds, res.inputs) == ["envVars"]:
            env_changed.append(res.logical_name)
    assert env_changed


def test_adopting_a_service_plans_no_replace_for_its_env() -> None:
    ev = run(make_settings(api={"importIds": {1: "srv-existing0001"}}))
    api1 = ev.by_name("api-1")
    assert api1.import_id == "srv-existing0001"
    olds = read_back_on_import(api1.inputs)
    assert web_service_replaces(olds, api1.inputs, api1.ignore_changes) == []
    assert web_service_replaces(olds, api1.inputs) == ["envVars"]
    # Its declared env still reaches it through EnvVarsForService.
    assert ev.by_name("api-1-env").inputs["serviceId"] == "srv-existing0001"
