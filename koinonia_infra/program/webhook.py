"""Render's event webhook for the events that matter (`render:webhooks:Webhook`).

Declared only when the secure key `koinonia:monitorWebhookUrl` is set
(`pulumi config set --secret koinonia:monitorWebhookUrl https://…`): the URL is a credential for
whoever receives the events, so it stays a Pulumi secret end to end. The event types are
`koinonia:monitor.webhookEvents` (default: instance failures, unhealthy instances, deploys ending,
image pulls failing, suspensions, Postgres unavailable, Key Value unhealthy).

Inputs from pulumi-render's Webhook (cloudy-sky-software/pulumi-render
sdk/python/pulumi_render/webhooks/webhook.py: owner_id, name, url, enabled, event_filter of
`EventFilterItem`; the API's POST /webhooks in provider/cmd/pulumi-gen-render/openapi.yml
requires ownerId, name, url, enabled, eventFilter). Render filters by event type only: a
`deploy_ended` arrives for every deploy, and its `details.deployStatus` tells a failure apart.
"""

from __future__ import annotations

import pulumi
from pulumi_render.webhooks import EventFilterItem, Webhook

from koinonia_infra.settings import MONITOR_WEBHOOK_URL_KEY, NAMESPACE, Settings


def event_webhook(settings: Settings) -> Webhook | None:
    url = pulumi.Config(NAMESPACE).get_secret(MONITOR_WEBHOOK_URL_KEY)
    if url is None:
        return None
    return Webhook(
        "event-webhook",
        owner_id=settings.owner_id,
        name=f"{settings.api.name}-events",
        url=url,
        enabled=True,
        event_filter=[EventFilterItem(e) for e in settings.monitor.webhook_events],
    )
