"""The policy pack's rules, importable (and unit-testable) without constructing the PolicyPack,
which would start a gRPC server and block.

Each rule is a plain `validate(args, report_violation)` function over pulumi-policy's argument
bags; `policy/__main__.py` wraps them into policies. Resource properties are the inputs as
registered (camelCase). A value the program marked secret reaches the rules as `SecretText`
(see `keep_secret_markers`), so "plaintext" can be told apart from "secret".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from koinonia_infra.settings import RENDER_PUBLIC_PORT, looks_secret

WEB_SERVICE = "render:services:WebService"
ENV_VARS = "render:services:EnvVarsForService"
DATASTORE_TYPES = frozenset({"render:postgres:Postgres", "render:key-value:KeyValue"})
API_SERVICE = re.compile(r"^api-\d+$")
API_ENV = re.compile(r"^api-\d+-env$")
INSTANCE_LABEL = "KOINONIA_INSTANCE"
FREE_PLAN = "free"
# Properties that may differ between API services (Render fills `name`; the rest is ours).
SERVICE_OWN = frozenset({"name"})
ENV_OWN = frozenset({"serviceId"})

ReportViolation = Callable[..., None]

_SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


class SecretText(str):
    """A string value the program marked secret."""


def keep_secret_markers(value: Any) -> Any:
    """Turn serialized secret strings (`{sig: secret, value: "…"}`) into `SecretText`, leaving
    everything else as it is. pulumi-policy's own deserializer unwraps secrets silently."""
    if isinstance(value, list):
        return [keep_secret_markers(v) for v in value]
    if isinstance(value, dict):
        sig_key, secret_sig = _SECRET_SIG
        if value.get(sig_key) == secret_sig and isinstance(value.get("value"), str):
            return SecretText(value["value"])
        return {k: keep_secret_markers(v) for k, v in value.items()}
    return value


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _env_items(props: Mapping[str, Any]) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for entry in _get(props, "envVars") or []:
        key = _get(entry, "key")
        if isinstance(key, str):
            items.append((key, _get(entry, "value")))
    return items


def _plain(value: Any) -> Any:
    """Comparable form: proxies and SecretText become plain containers and strings."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(value[k]) for k in value}
    if isinstance(value, list | tuple) or (
        hasattr(value, "__len__") and hasattr(value, "__getitem__")
    ):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------
# Resource rules
# ------------------------------------------------------------------------------------------


def datastores_protected(args: Any, report_violation: ReportViolation) -> None:
    """Postgres and Key Value must be protected: deleting them loses production data."""
    if args.resource_type in DATASTORE_TYPES and not args.opts.protect:
        report_violation(
            f"{args.name}: datastores must be declared with protect=True "
            "(and retain_on_delete=True)"
        )


def no_plaintext_secrets(args: Any, report_violation: ReportViolation) -> None:
    """An env var whose key looks secret must carry a secret (or generated) value."""
    if args.resource_type not in (WEB_SERVICE, ENV_VARS):
        return
    for key, value in _env_items(args.props):
        if looks_secret(key) and isinstance(value, str) and not isinstance(value, SecretText):
            report_violation(
                f"{args.name}: env var {key} has a plaintext value; "
                "make it a secret (pulumi config set --secret, or Output.secret)"
            )


def backend_port_and_plan(args: Any, report_violation: ReportViolation) -> None:
    """API services: never on Render's public port 10000, never on the free plan (free
    services cannot receive private-network traffic from the edge)."""
    if args.resource_type == WEB_SERVICE and API_SERVICE.match(args.name):
        plan = _get(_get(args.props, "serviceDetails") or {}, "plan")
        if plan == FREE_PLAN:
            report_violation(f"{args.name}: API services must be on a paid plan, not free")
    if args.resource_type in (WEB_SERVICE, ENV_VARS) and (
        API_SERVICE.match(args.name) or API_ENV.match(args.name)
    ):
        for key, value in _env_items(args.props):
            if key == "PORT" and str(value) == str(RENDER_PUBLIC_PORT):
                report_violation(
                    f"{args.name}: PORT={RENDER_PUBLIC_PORT} is reserved by Render for public "
                    "traffic; the edge reaches instances privately (use 8080)"
                )


# ------------------------------------------------------------------------------------------
# Stack rule
# ------------------------------------------------------------------------------------------


def _without(props: Mapping[str, Any], own: Iterable[str]) -> dict[str, Any]:
    skip = set(own)
    return {k: _plain(props[k]) for k in props if k not in skip}


def _env_without_label(props: Mapping[str, Any], own: Iterable[str] = ENV_OWN) -> dict[str, Any]:
    data = _without(props, own)
    data["envVars"] = sorted(
        ([k, _plain(v)] for k, v in _env_items(props) if k != INSTANCE_LABEL),
        key=lambda kv: str(kv[0]),
    )
    return data


def api_services_identical(args: Any, report_violation: ReportViolation) -> None:
    """All API services (and their env vars) are identical except the name and the instance
    label: one spec, N copies."""
    groups = (
        # Services carry their env inline too (their first deploy's), label included.
        (WEB_SERVICE, API_SERVICE, lambda p: _env_without_label(p, SERVICE_OWN)),
        (ENV_VARS, API_ENV, _env_without_label),
    )
    for rtype, pattern, normal in groups:
        members = sorted(
            (r for r in args.resources if r.resource_type == rtype and pattern.match(r.name)),
            key=lambda r: r.name,
        )
        if len(members) < 2:
            continue
        reference = normal(members[0].props)
        for other in members[1:]:
            candidate = normal(other.props)
            differing = sorted(
                k for k in set(reference) | set(candidate) if reference.get(k) != candidate.get(k)
            )
            if differing:
                report_violation(
                    f"{other.name} differs from {members[0].name} in {', '.join(differing)}; "
                    "API services must be identical except name and instance label",
                    other.urn,
                )


# ------------------------------------------------------------------------------------------
# Assembly (used by policy/__main__.py; constructing policies starts nothing)
# ------------------------------------------------------------------------------------------


def install_secret_markers() -> Callable[[], None]:
    """Make pulumi-policy hand secret strings to the rules as `SecretText` instead of silently
    unwrapping them. Returns a function undoing it."""
    import pulumi_policy.policy as analyzer

    name = "deserialize_properties"
    original = getattr(analyzer, name)

    def deserialize(props: Any, proxy_secrets: bool = False) -> Any:
        return original(keep_secret_markers(props), proxy_secrets)

    setattr(analyzer, name, deserialize)

    def undo() -> None:
        setattr(analyzer, name, original)

    return undo


def policies() -> list[Any]:
    from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

    return [
        ResourceValidationPolicy(
            name="datastores-protected",
            description="Postgres and Key Value are declared with protect=True.",
            validate=datastores_protected,
        ),
        ResourceValidationPolicy(
            name="no-plaintext-secrets",
            description="Env vars whose key looks secret carry secret values, never plaintext.",
            validate=no_plaintext_secrets,
        ),
        ResourceValidationPolicy(
            name="backends-private-and-paid",
            description="API services are not on port 10000 and not on the free plan.",
            validate=backend_port_and_plan,
        ),
        StackValidationPolicy(
            name="api-services-identical",
            description="API services are identical except their name and instance label.",
            validate=api_services_identical,
        ),
    ]
