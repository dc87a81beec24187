"""Which instance served an answer: the edge's upstream header, else the body's `instance`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from koinonia_infra.measure.samples import Sample

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


def hostport(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


class Attributor:
    """Maps an answer (upstream header or body `instance` label) to an instance number."""

    def __init__(self, descriptor: Descriptor) -> None:
        self._keys: dict[str, int] = {}
        self.update(descriptor)

    def update(self, descriptor: Descriptor) -> None:
        # A redeployed instance may come back on a new address; old keys stay valid for old samples.
        for inst in descriptor.instances:
            keys = [str(inst.number), f"api-{inst.number}", inst.name, inst.private_address]
            hp = hostport(inst.url)
            if hp:
                keys.append(hp)
            for key in keys:
                self._keys[key.lower()] = inst.number

    def __call__(self, sample: Sample) -> int | None:
        if sample.upstream is None:
            return None
        return self._keys.get(sample.upstream.strip().lower())


def first_served_after(
    samples: Sequence[Sample], attribute: Attributor, number: int, since: float
) -> Sample | None:
    for s in samples:
        if s.started >= since and s.ok and attribute(s) == number:
            return s
    return None
