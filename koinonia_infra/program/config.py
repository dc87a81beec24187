"""Settings inside the Pulumi program: the same validation as the CLI, fed from `pulumi.Config`."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from koinonia_infra.errors import ConfigError
from koinonia_infra.settings import NAMESPACE, TOP_LEVEL_KEYS, Settings, settings_from_config

# Structured keys arrive from the engine as JSON text; scalar keys as plain strings.
_OBJECT_KEYS = frozenset(TOP_LEVEL_KEYS) - {"ownerId", "region"}
SOURCE = "pulumi config"


def settings_from_pulumi_config() -> Settings:
    """Read the `koinonia:` namespace of the running stack and validate it like the CLI does."""
    config = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    problems: list[str] = []
    for key in TOP_LEVEL_KEYS:
        value = config.get(key)
        if value is None:
            continue
        if key in _OBJECT_KEYS:
            try:
                raw[key] = json.loads(value)
            except json.JSONDecodeError:
                problems.append(f"{SOURCE}: {NAMESPACE}:{key}: expected a mapping of settings")
        else:
            raw[key] = value
    if problems:
        raise ConfigError(f"invalid settings in {SOURCE}", lines=problems)
    return settings_from_config(raw, source=SOURCE)


def secret_env_values(settings: Settings) -> dict[str, pulumi.Output[str]]:
    """The secure value of each `api.secretEnv` key (`pulumi config set --secret koinonia:KEY`)."""
    config = pulumi.Config(NAMESPACE)
    return {key: config.require_secret(key) for key in settings.api.secret_env}
