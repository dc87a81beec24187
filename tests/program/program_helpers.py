"""Settings and evaluation helpers for the program tests (imported by name: no package)."""

from __future__ import annotations

from typing import Any

from koinonia_infra.program.mocks import Evaluation, evaluate
from koinonia_infra.settings import Settings, settings_from_config

BASE: dict[str, Any] = {
    "ownerId": "tea-testowner0001",
    "region": "oregon",
    "api": {
        "instances": [1, 2],
        "env": {"LOG_LEVEL": "info", "SMS_PROVIDER": "twilio"},
        "secretEnv": ["JWT_SECRET"],
    },
}


def make_settings(**sections: Any) -> Settings:
    """BASE with top-level sections merged one level deep (`api={"instances": [2]}`)."""
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return settings_from_config(data, source="test")


def evaluate_settings(settings: Settings | None = None, **secret_values: str) -> Evaluation:
    return evaluate(settings or make_settings(), stack="test", secret_values=secret_values)
