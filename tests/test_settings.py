"""Settings: valid and invalid stack files give Settings or exact one-line problems."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path
from typing import get_args

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koinonia_infra import settings as s
from koinonia_infra.errors import ConfigError

PROD = Path(__file__).resolve().parents[1] / "Pulumi.prod.yaml"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        s.load_settings(path)
    prefix = f"{path}: "
    return [line.removeprefix(prefix) for line in info.value.lines] or [info.value.message]


def test_prod_stack_file_is_valid_and_declares_two_instances() -> None:
    settings_ = s.load_settings(PROD)
    assert settings_.api.instances == [1, 2]
    assert settings_.region == "oregon"
    assert settings_.api.plan == "standard"
    assert settings_.api.port == 8080
    assert settings_.api.health_check_path == "/health"
    assert (settings_.postgres.plan, settings_.postgres.version) == ("basic_1gb", "16")
    assert settings_.key_value.plan == "starter"
    assert settings_.edge.enabled
    assert [settings_.api.service_name(n) for n in settings_.api.instances] == [
        "koinonia-sms-backend",
        "koinonia-sms-backend-2",
    ]


def test_prod_stack_file_holds_no_plaintext_secret() -> None:
    config = yaml.safe_load(PROD.read_text())["config"]
    api = config["koinonia:api"]
    assert not any(s.looks_secret(key) for key in api.get("env", {}))
    for key in api.get("secretEnv", []):
        value = config.get(f"koinonia:{key}")
        assert value is None or set(value) == {"secure"}


VALID = [
    ("minimal", "config:\n  koinonia:ownerId: tea-abc123\n"),
    ("bare keys are the project's", "config:\n  ownerId: usr-abc\n"),
    (
        "other namespaces ignored",
        "config:\n  koinonia:ownerId: tea-abc\n  render:apiKey:\n    secure: v1:abc\n",
    ),
    (
        "secure secret env value",
        """\
        config:
          koinonia:ownerId: tea-abc
          koinonia:api: {secretEnv: [JWT_SECRET]}
          koinonia:JWT_SECRET:
            secure: v1:AAAA
        """,
    ),
    ("version as int", "config:\n  koinonia:ownerId: tea-a\n  koinonia:postgres: {version: 17}\n"),
    ("one instance", "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {instances: [2]}\n"),
    (
        "numeric env value",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {env: {WORKERS: 4}}\n",
    ),
]


@pytest.mark.parametrize(("label", "body"), VALID, ids=[v[0] for v in VALID])
def test_valid_fixtures(tmp_path: Path, label: str, body: str) -> None:
    assert s.load_settings(write(tmp_path, body)).owner_id.startswith(("tea-", "usr-"))


INVALID = [
    (
        "unknown top-level key",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:regoin: ohio\n",
        ["koinonia:regoin: unknown key; did you mean 'region'?"],
    ),
    (
        "unknown nested key",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {healthCheckpath: /h}\n",
        ["koinonia:api.healthCheckpath: unknown key; did you mean 'healthCheckPath'?"],
    ),
    (
        "empty instances",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {instances: []}\n",
        ["koinonia:api.instances: at least one instance is required, e.g. [1, 2]"],
    ),
    (
        "duplicate instances",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {instances: [1, 2, 2]}\n",
        ["koinonia:api.instances: duplicate instance number(s) [2]"],
    ),
    (
        "port 10000",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {port: 10000}\n",
        [
            "koinonia:api.port: port 10000 is reserved by Render for public traffic and refused "
            "for private traffic; the edge reaches instances privately (use 8080)"
        ],
    ),
    (
        "free plan for a backend",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {plan: free}\n",
        [
            "koinonia:api.plan: Input should be 'starter', 'standard', 'pro', 'pro_plus', "
            "'pro_max' or 'pro_ultra'"
        ],
    ),
    (
        "plaintext secret-looking env",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {env: {TWILIO_API_KEY: abc}}\n",
        [
            "koinonia:api.env: TWILIO_API_KEY looks secret and must not be a plaintext value: "
            "list it in api.secretEnv and run `pulumi config set --secret koinonia:TWILIO_API_KEY`"
        ],
    ),
    (
        "plaintext DATABASE_URL",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {env: {DATABASE_URL: x}}\n",
        ["koinonia:api.env: DATABASE_URL is set by koinonia-infra itself; remove it from env"],
    ),
    (
        "secret env value in plaintext",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {secretEnv: [JWT_SECRET]}\n"
        "  koinonia:JWT_SECRET: hunter2\n",
        [
            "koinonia:JWT_SECRET: secret value stored in plaintext; run "
            "`pulumi config set --secret koinonia:JWT_SECRET`"
        ],
    ),
    (
        "bad region",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:region: mars\n",
        [
            "koinonia:region: Input should be 'oregon', 'ohio', 'virginia', 'frankfurt' or "
            "'singapore'"
        ],
    ),
    (
        "bad postgres version",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:postgres: {version: 9}\n",
        ["koinonia:postgres.version: Input should be '11', '12', '13', '14', '15', '16' or '17'"],
    ),
    (
        "missing owner",
        "config:\n  koinonia:region: ohio\n",
        ["koinonia:ownerId: required (your Render workspace id, tea-…)"],
    ),
    (
        "unpinned caddy image",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:edge: {image: 'caddy:latest'}\n",
        ["koinonia:edge.image: pin the Caddy image to a version tag, e.g. caddy:2.6.4-alpine"],
    ),
    (
        "health path that would break the Caddyfile",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {healthCheckPath: '/health {'}\n",
        ["koinonia:api.healthCheckPath: must be a plain URL path without spaces, quotes or braces"],
    ),
    (
        "zero health check interval",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:edge: {healthCheckIntervalSeconds: 0}\n",
        ["koinonia:edge.healthCheckIntervalSeconds: Input should be greater than or equal to 0.1"],
    ),
    (
        "import id of an undeclared instance",
        "config:\n  koinonia:ownerId: tea-a\n"
        "  koinonia:api: {instances: [1], importIds: {3: srv-x}}\n",
        ["koinonia:api: importIds names undeclared instance(s) [3]"],
    ),
    (
        "two problems, two lines",
        "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {instances: [], port: 10000}\n",
        [
            "koinonia:api.instances: at least one instance is required, e.g. [1, 2]",
            "koinonia:api.port: port 10000 is reserved by Render for public traffic and refused "
            "for private traffic; the edge reaches instances privately (use 8080)",
        ],
    ),
]


@pytest.mark.parametrize(("label", "body", "expected"), INVALID, ids=[v[0] for v in INVALID])
def test_invalid_fixtures_give_exact_lines(
    tmp_path: Path, label: str, body: str, expected: list[str]
) -> None:
    assert problems(write(tmp_path, body)) == expected


def test_numeric_env_values_become_text(tmp_path: Path) -> None:
    body = "config:\n  koinonia:ownerId: tea-a\n  koinonia:api: {env: {WORKERS: 4, RATIO: 0.5}}\n"
    assert s.load_settings(write(tmp_path, body)).api.env == {"WORKERS": "4", "RATIO": "0.5"}


def test_prod_edge_rejoins_within_the_drill_window() -> None:
    # The failover drill wants a resumed instance back within 10 s; the edge's memory of a
    # failure must be well under that, and longer than one active-check interval.
    edge = s.load_settings(PROD).edge
    assert edge.health_check_interval_seconds < edge.fail_duration_seconds <= 3
    assert s.EdgeSettings().fail_duration_seconds == 3


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "config:\n  koinonia:ownerId: [tea-a\n")
    with pytest.raises(ConfigError) as info:
        s.load_settings(path)
    assert str(info.value).startswith(f"{path}: not valid YAML (line ")


def test_missing_stack_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stack file not found"):
        s.load_settings(tmp_path / "Pulumi.nope.yaml")


def _enum_values(module: str, name: str) -> set[str]:
    import importlib

    enum = getattr(importlib.import_module(f"pulumi_render.{module}._enums"), name)
    return {member.value for member in enum}


@pytest.mark.parametrize(
    ("literal", "module", "enum"),
    [
        (s.Region, "services", "WebServiceDetailsCreateRegion"),
        (s.WebPlan, "services", "WebServiceDetailsCreatePlan"),
        (s.Runtime, "services", "WebServiceDetailsCreateRuntime"),
        (s.PostgresVersion, "postgres", "PostgresVersion"),
        (s.MaxmemoryPolicy, "key_value", "MaxmemoryPolicy"),
    ],
)
def test_closed_sets_match_the_provider(literal: object, module: str, enum: str) -> None:
    assert set(get_args(literal)) == _enum_values(module, enum)


@pytest.mark.parametrize(
    ("literal", "module", "enum"),
    [(s.PostgresPlan, "postgres", "PostgresPlan"), (s.KeyValuePlan, "key_value", "KeyValuePlan")],
)
def test_datastore_plans_are_accepted_by_the_provider(
    literal: object, module: str, enum: str
) -> None:
    accepted = _enum_values(module, enum)
    ours = set(get_args(literal))
    assert ours <= accepted
    assert "free" not in ours


# --- corrupted stack files: Settings or ConfigError, never anything else ----------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["tea-abc", "/health", "standard", "oregon", "16"]),
)  # fmt: skip
keys = st.one_of(
    st.sampled_from(
        ["ownerId", "region", "api", "postgres", "keyValue", "edge", "verify", "instances",
         "port", "env", "secretEnv", "importIds", "plan", "version", "image", "secure"]
    ),
    st.text(max_size=8),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
def test_random_config_gives_settings_or_config_error(config: dict[str, object]) -> None:
    try:
        s.settings_from_config(config)
    except ConfigError as exc:
        assert exc.lines
        assert all(line.startswith("koinonia:") for line in exc.lines)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_random_bytes_as_stack_file(tmp_path_factory: pytest.TempPathFactory, data: object) -> None:
    path = tmp_path_factory.mktemp("h") / "Pulumi.x.yaml"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(str(data), encoding="utf-8")
    with contextlib.suppress(ConfigError):
        s.load_settings(path)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2000), st.sampled_from(["", "x", ":", "{", "- ", "\t", "[", "&a", "*a"]))
def test_corrupted_prod_file(
    tmp_path_factory: pytest.TempPathFactory, position: int, junk: str
) -> None:
    text = PROD.read_text()
    position = min(position, len(text))
    path = tmp_path_factory.mktemp("c") / "Pulumi.prod.yaml"
    path.write_text(text[:position] + junk + text[position + len(junk) :], encoding="utf-8")
    with contextlib.suppress(ConfigError):
        s.load_settings(path)


def test_verify_expects_the_stacks_node_env_unless_told_otherwise() -> None:
    staging = s.settings_from_config({"ownerId": "tea-a", "api": {"nodeEnv": "staging"}})
    assert staging.verify.environment == "staging"
    explicit = s.settings_from_config(
        {"ownerId": "tea-a", "api": {"nodeEnv": "staging"}, "verify": {"environment": "qa"}}
    )
    assert explicit.verify.environment == "qa"
