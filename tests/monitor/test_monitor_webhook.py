"""The program declares Render's event webhook only when its secure URL is set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "program"))
from program_helpers import (  # type: ignore[import-not-found, unused-ignore]
    evaluate_settings,
    make_settings,
)

from koinonia_infra.errors import ConfigError
from koinonia_infra.program.mocks import Secret
from koinonia_infra.settings import DEFAULT_WEBHOOK_EVENTS, settings_from_config

URL = "https://hooks.example.test/render/s3cr3t-path-token"


def test_no_url_no_webhook() -> None:
    evaluation = evaluate_settings()
    assert not [r for r in evaluation.resources if r.type == "render:webhooks:Webhook"]


def test_the_webhook_carries_the_events_that_matter_and_a_secret_url() -> None:
    evaluation = evaluate_settings(monitorWebhookUrl=URL)
    [hook] = [r for r in evaluation.resources if r.type == "render:webhooks:Webhook"]
    assert hook.inputs["ownerId"] == "tea-testowner0001"
    assert hook.inputs["enabled"] is True
    assert hook.inputs["name"] == "koinonia-sms-backend-events"
    assert hook.inputs["eventFilter"] == list(DEFAULT_WEBHOOK_EVENTS)
    assert {"server_failed", "server_unhealthy", "deploy_ended", "postgres_unavailable"} <= set(
        hook.inputs["eventFilter"]
    )
    assert isinstance(hook.inputs["url"], Secret)


def test_the_event_types_come_from_koinonia_monitor() -> None:
    settings = make_settings(monitor={"webhookEvents": ["server_failed"]})
    evaluation = evaluate_settings(settings, monitorWebhookUrl=URL)
    [hook] = [r for r in evaluation.resources if r.type == "render:webhooks:Webhook"]
    assert hook.inputs["eventFilter"] == ["server_failed"]


def test_an_unknown_event_type_or_a_plaintext_url_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as bad:
        make_settings(monitor={"webhookEvents": ["server_exploded"]})
    assert bad.value.lines == [
        "test: koinonia:monitor.webhookEvents: unknown Render event type(s): server_exploded"
    ]
    with pytest.raises(ConfigError) as plain:
        settings_from_config(
            {"ownerId": "tea-testowner0001", "monitorWebhookUrl": URL}, source="test"
        )
    assert plain.value.lines == [
        "test: koinonia:monitorWebhookUrl: secret value stored in plaintext; "
        "run `pulumi config set --secret koinonia:monitorWebhookUrl`"
    ]
