"""Which instance served an answer: the edge's upstream header, else the body's `instance`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from koinonia_infra.measure.samples import Sample

if TYPE_CHECKING:
    from koinonia_infra.descriptor import Descriptor, InstanceRef


def upstream_from_body(body: bytes) -> str | None:
    """The `instance` a JSON object body names (the /health contract, measure/health.py).
    Bodies without the key's bytes are not parsed: under load every answer passes here, and a
    JSON parse per answer was a fifth of the load client's CPU against the edge's own health
    path. A key spelled with `\\u` escapes is not recognised; no instance writes one."""
    if not body or body[:1] not in (b"{", b" ", b"\n") or b'"instance"' not in body:
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
    """THE attribution of an answer to an instance: its `X-Koinonia-Upstream` header (the address
    the edge dialed, koinonia_infra/caddy.py), else the `instance` its body names.

    A label names an instance when it is the instance's private address (what the edge dials on
    Render), the `host:port` of its URL (what the sandbox's edge dials: nothing there resolves the
    `<slug>:<port>` private address, koinonia_infra/sandbox/supervisor.py), its number, `api-N`,
    its service name or its service id. Case and surrounding blanks do not matter.
    """

    def __init__(self, descriptor: Descriptor) -> None:
        self._keys: dict[str, InstanceRef] = {}
        self.update(descriptor)

    def update(self, descriptor: Descriptor) -> None:
        # A redeployed instance may come back on a new address; old keys stay valid for old samples.
        for inst in descriptor.instances:
            keys = [
                str(inst.number),
                f"api-{inst.number}",
                inst.name,
                inst.service_id,
                inst.private_address,
                urlsplit(inst.url).netloc,
                hostport(inst.url) or "",
            ]
            for key in keys:
                if key:
                    self._keys[key.strip().lower()] = inst

    def instance(self, upstream: str | None) -> InstanceRef | None:
        """The instance an upstream label names, or None (no label, or no declared instance)."""
        if not upstream:
            return None
        return self._keys.get(upstream.strip().lower())

    def __call__(self, sample: Sample) -> int | None:
        inst = self.instance(sample.upstream)
        return None if inst is None else inst.number


def first_served_after(
    samples: Sequence[Sample], attribute: Attributor, number: int, since: float
) -> Sample | None:
    for s in samples:
        if s.started >= since and s.ok and attribute(s) == number:
            return s
    return None
