"""Which instance served an answer: the edge's upstream header, else the body's `instance`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from koinonia_infra.descriptor import Descriptor, InstanceRef


def instance_for_upstream(descriptor: Descriptor, upstream: str | None) -> InstanceRef | None:
    """Which declared instance an upstream label names: its private address (the edge header), or
    the label the instance reports in its body (number, `api-N`, service name or id)."""
    if not upstream:
        return None
    for inst in descriptor.instances:
        if upstream in (
            inst.private_address,
            str(inst.number),
            f"api-{inst.number}",
            inst.name,
            inst.service_id,
            # The sandbox's edge dials each instance's loopback `url`: nothing there resolves
            # the `<slug>:<port>` private address (koinonia_infra/sandbox/supervisor.py).
            urlsplit(inst.url).netloc,
        ):
            return inst
    return None


def upstream_from_body(body: bytes) -> str | None:
    if not body or body[:1] not in (b"{", b" ", b"\n"):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict):
        value = data.get("instance")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)[:200]
    return None
