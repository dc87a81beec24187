"""Settings inside the Pulumi program: the same validation as the CLI, fed from `pulumi.Config`."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from koinonia_infra.errors import ConfigError
from koinonia_infra.settings import (
    NAMESPACE,
    TOP_LEVEL_KEYS,
    SecretValue,
    Settings,
    settings_from_config,
)

# Structured keys arrive from the engine as JSON text; scalar keys as plain strings.
_OBJECT_KEYS = frozenset(TOP_LEVEL_KEYS) - {"ownerId", "region"}
SOURCE = "pulumi config"


def _engine_config() -> tuple[dict[str, Any], set[str]]:
    """Every config key of the running stack, and which of them are secret.

    `pulumi.Config` can only look keys up, so unknown keys would go unnoticed. The engine hands
    a local program the whole bag as `PULUMI_CONFIG` (+ `PULUMI_CONFIG_SECRET_KEYS`); inline
    programs and mocks set it with `set_all_config`. Both are read, the explicit one winning,
    as `pulumi.Config.get` does.
    """
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret = set(runtime_config.get_config_secret_keys_env())
    secret |= {key for key in values if runtime_config.is_config_secret(key)}
    return values, secret


def settings_from_pulumi_config() -> Settings:
    """Read the `koinonia:` namespace of the running stack and validate it like the CLI does:
    the same one-line problems, unknown keys and plaintext secrets included."""
    config = pulumi.Config(NAMESPACE)
    values, secret_keys = _engine_config()
    prefix = f"{NAMESPACE}:"
    raw: dict[str, Any] = {}
    for full_key in values:
        if full_key.startswith(prefix) and full_key.removeprefix(prefix) not in TOP_LEVEL_KEYS:
            # A secretEnv value (validated as secret-or-not, never kept) or an unknown key.
            raw[full_key.removeprefix(prefix)] = (
                SecretValue("[secret]") if full_key in secret_keys else ""
            )
    problems: list[str] = []
    for key in TOP_LEVEL_KEYS:
        value = config.get(key)  # also sees PULUMI_CONFIG_<KEY> variables
        if value is None:
            continue
        if key in _OBJECT_KEYS:
            try:
                raw[key] = json.loads(value)
            except json.JSONDecodeError:
                problems.append(f"{SOURCE}: {NAMESPACE}:{key}: expected a mapping of settings")
        else:
            raw[key] = value
    try:
        settings = settings_from_config(raw, source=SOURCE)
    except ConfigError as exc:
        problems += exc.lines
    if problems:
        raise ConfigError(f"invalid settings in {SOURCE}", lines=problems)
    return settings


def secret_env_values(settings: Settings) -> dict[str, pulumi.Output[str]]:
    """The secure value of each `api.secretEnv` key (`pulumi config set --secret koinonia:KEY`)."""
    config = pulumi.Config(NAMESPACE)
    return {key: config.require_secret(key) for key in settings.api.secret_env}
