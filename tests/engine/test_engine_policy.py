"""Policy rules through `validate()` with hand-built resources; the pack is never constructed."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from koinonia_infra import policy_rules
from koinonia_infra.policy_rules import SecretText, keep_secret_markers

WEB = "render:services:WebService"
ENV = "render:services:EnvVarsForService"


def _opts(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def _urn(rtype: str, name: str) -> str:
    return f"urn:pulumi:prod::koinonia::{rtype}::{name}"


def _validate(
    policy_name: str, rtype: str, name: str, props: dict[str, Any], *, protect: bool = False
) -> list[str]:
    policy = next(p for p in policy_rules.policies() if p.name == policy_name)
    violations: list[str] = []
    args = ResourceValidationArgs(rtype, props, _urn(rtype, name), name, _opts(protect), None)
    policy.validate(args, lambda message, urn=None: violations.append(message))
    return violations


def _service(name: str, *, plan: str = "standard", region: str = "oregon") -> dict[str, Any]:
    return {
        "name": name,
        "ownerId": "tea-x",
        "repo": "https://github.com/koinonia/koinonia-sms-backend",
        "branch": "main",
        "serviceDetails": {
            "runtime": "node",
            "plan": plan,
            "region": region,
            "healthCheckPath": "/health",
        },
    }


def _env(number: int, **extra: str) -> dict[str, Any]:
    values = {
        "DATABASE_URL": SecretText("postgres://internal/db"),
        "PORT": "8080",
        "KOINONIA_INSTANCE": str(number),
        "NODE_ENV": "production",
        **extra,
    }
    return {
        "serviceId": f"srv-{number}",
        "envVars": [{"key": k, "value": v} for k, v in values.items()],
    }


@pytest.mark.parametrize("rtype", ["render:postgres:Postgres", "render:key-value:KeyValue"])
def test_datastores_must_be_protected(rtype: str) -> None:
    assert _validate("datastores-protected", rtype, "postgres", {}, protect=True) == []
    assert _validate("datastores-protected", rtype, "postgres", {}, protect=False) == [
        "postgres: datastores must be declared with protect=True (and retain_on_delete=True)"
    ]


def test_an_unprotected_web_service_is_not_a_datastore_violation() -> None:
    assert _validate("datastores-protected", WEB, "api-1", _service("a")) == []


def test_secret_looking_env_values_must_be_secret() -> None:
    assert _validate("no-plaintext-secrets", ENV, "api-1-env", _env(1)) == []
    bad = _env(1, JWT_SECRET="plain-value-for-test")
    assert _validate("no-plaintext-secrets", ENV, "api-1-env", bad) == [
        "api-1-env: env var JWT_SECRET has a plaintext value; "
        "make it a secret (pulumi config set --secret, or Output.secret)"
    ]
    # The message never carries the value.
    assert "plain-value-for-test" not in " ".join(
        _validate("no-plaintext-secrets", ENV, "api-1-env", bad)
    )


def test_plain_keys_may_have_plain_values() -> None:
    assert (
        _validate(
            "no-plaintext-secrets",
            ENV,
            "edge-env",
            {"envVars": [{"key": "LOG_LEVEL", "value": "info"}]},
        )
        == []
    )


def test_backends_not_on_port_10000() -> None:
    env = _env(2)
    env["envVars"] = [
        e if e["key"] != "PORT" else {"key": "PORT", "value": "10000"} for e in env["envVars"]
    ]
    assert _validate("backends-private-and-paid", ENV, "api-2-env", env) == [
        "api-2-env: PORT=10000 is reserved by Render for public traffic; the edge reaches "
        "instances privately (use 8080)"
    ]
    assert _validate("backends-private-and-paid", ENV, "api-2-env", _env(2)) == []


def test_backends_not_on_a_free_plan_but_the_edge_is_not_a_backend() -> None:
    assert _validate("backends-private-and-paid", WEB, "api-1", _service("a", plan="free")) == [
        "api-1: API services must be on a paid plan, not free"
    ]
    assert _validate("backends-private-and-paid", WEB, "api-1", _service("a")) == []
    assert _validate("backends-private-and-paid", WEB, "edge", _service("e", plan="free")) == []


def _stack(resources: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str | None]]:
    policy = next(p for p in policy_rules.policies() if p.name == "api-services-identical")
    built = [
        PolicyResource(rtype, props, _urn(rtype, name), name, _opts(), None, None, [], {})
        for rtype, name, props in resources
    ]
    found: list[tuple[str, str | None]] = []
    policy.validate(
        StackValidationArgs(built), lambda message, urn=None: found.append((message, urn))
    )
    return found


def test_api_services_identical_except_name_and_label() -> None:
    resources = [
        (WEB, "api-1", _service("koinonia-sms-backend")),
        (WEB, "api-2", _service("koinonia-sms-backend-2")),
        (ENV, "api-1-env", _env(1)),
        (ENV, "api-2-env", _env(2)),
        (WEB, "edge", _service("koinonia-edge", plan="starter")),
    ]
    assert _stack(resources) == []


def test_services_created_with_their_env_inline_differ_only_in_the_label() -> None:
    # The program creates each service with its full env inline (its first deploy needs it).
    resources = [
        (WEB, "api-1", {**_service("koinonia-sms-backend"), "envVars": _env(1)["envVars"]}),
        (WEB, "api-2", {**_service("koinonia-sms-backend-2"), "envVars": _env(2)["envVars"]}),
        (ENV, "api-1-env", _env(1)),
        (ENV, "api-2-env", _env(2)),
    ]
    assert _stack(resources) == []
    resources[1] = (
        WEB,
        "api-2",
        {**_service("koinonia-sms-backend-2"), "envVars": _env(2, LOG_LEVEL="x")["envVars"]},
    )
    assert [message for message, _ in _stack(resources)] == [
        "api-2 differs from api-1 in envVars; API services must be identical except name and "
        "instance label"
    ]


def test_api_services_differing_in_spec_are_reported() -> None:
    resources = [
        (WEB, "api-1", _service("koinonia-sms-backend")),
        (WEB, "api-2", _service("koinonia-sms-backend-2", region="ohio")),
        (ENV, "api-1-env", _env(1)),
        (ENV, "api-2-env", _env(2, LOG_LEVEL="debug")),
    ]
    assert _stack(resources) == [
        (
            "api-2 differs from api-1 in serviceDetails; API services must be identical except "
            "name and instance label",
            _urn(WEB, "api-2"),
        ),
        (
            "api-2-env differs from api-1-env in envVars; API services must be identical except "
            "name and instance label",
            _urn(ENV, "api-2-env"),
        ),
    ]


def test_secret_markers_survive_deserialization() -> None:
    sig = "4dabf18193072939515e22adb298388d"
    wire = {
        "envVars": [
            {
                "key": "DATABASE_URL",
                "value": {sig: "1b47061264138c4ac30d75fd1eb44270", "value": "pg://x"},
            },
            {"key": "PORT", "value": "8080"},
        ]
    }
    marked = keep_secret_markers(wire)
    assert isinstance(marked["envVars"][0]["value"], SecretText)
    assert marked["envVars"][0]["value"] == "pg://x"
    assert not isinstance(marked["envVars"][1]["value"], SecretText)

    import pulumi_policy.policy as analyzer

    undo = policy_rules.install_secret_markers()
    try:
        props = analyzer.deserialize_properties(wire)  # type: ignore[attr-defined]
    finally:
        undo()
    assert isinstance(props["envVars"][0]["value"], SecretText)
    # Without the markers, pulumi-policy unwraps the secret into a plain string.
    unmarked = analyzer.deserialize_properties(wire)  # type: ignore[attr-defined]
    assert type(unmarked["envVars"][0]["value"]) is str
