"""The Pulumi program: shared datastores, N identical API services, the Caddy edge.

`build(settings)` declares everything; importing this package creates nothing, so tests can set
mocks first and `plan` can evaluate the same program in-process.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_render.services import WebService

from koinonia_infra.program.api import ApiInstance, api_instance
from koinonia_infra.program.config import secret_env_values, settings_from_pulumi_config
from koinonia_infra.program.datastores import datastores
from koinonia_infra.program.edge import edge
from koinonia_infra.program.webhook import event_webhook
from koinonia_infra.settings import Settings

__all__ = ["build", "settings_from_pulumi_config"]


def _url(service: WebService) -> pulumi.Output[str | None]:
    return service.service_details.apply(lambda d: d.url if d is not None else None)


def _instance_output(instance: ApiInstance) -> dict[str, Any]:
    return {
        "number": instance.number,
        "name": instance.name,
        "serviceId": instance.service.id,
        "url": _url(instance.service),
        "privateAddress": instance.private_address,
    }


def build(settings: Settings) -> None:
    """Declare the whole stack from validated settings and export its outputs."""
    stores = datastores(settings)
    secrets = secret_env_values(settings)
    instances = [
        api_instance(settings, number, stores, secrets) for number in sorted(settings.api.instances)
    ]
    if settings.edge.enabled:
        front = edge(settings, instances)
        edge_url = _url(front.service)
    else:
        # Without an edge the first instance is the entry point (single-instance mode).
        edge_url = _url(instances[0].service)
    pulumi.export("edgeUrl", edge_url)
    pulumi.export("instances", [_instance_output(i) for i in instances])
    pulumi.export("postgresId", stores.postgres.id)
    pulumi.export("keyValueId", stores.key_value.id)
    pulumi.export("region", settings.region)
    event_webhook(settings)
