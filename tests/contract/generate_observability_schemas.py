"""Writes the contract schemas of the observability endpoints `monitor` reads (GET
/metrics/{cpu,…}, /logs, /services/{serviceId}/events) with generate_schemas.py's converter, from
the same reference (cloudy-sky-software/pulumi-render provider/cmd/pulumi-gen-render/openapi.yml).

    python tests/contract/generate_observability_schemas.py path/to/openapi.yml [commit]
"""

from __future__ import annotations

import json
import sys
from typing import Any

import generate_schemas

OBSERVABILITY_SCHEMAS: dict[str, tuple[str, list[str]]] = {
    "metrics": (
        "#/paths/~1metrics~1cpu/get/responses/200/content/application~1json/schema",
        [
            "GET /metrics/cpu 200",
            "GET /metrics/memory 200",
            "GET /metrics/cpu-limit 200",
            "GET /metrics/memory-limit 200",
            "GET /metrics/http-requests 200",
            "GET /metrics/http-latency 200",
            "GET /metrics/instance-count 200",
            "GET /metrics/active-connections 200",
        ],
    ),
    "logs": (
        "#/components/responses/Logs200Response/content/application~1json/schema",
        ["GET /logs 200"],
    ),
    "event-list": (
        "#/paths/~1services~1{serviceId}~1events/get/responses/200/content/application~1json/schema",
        ["GET /services/{serviceId}/events 200"],
    ),
}


def _any_of_titled(node: Any) -> Any:
    """The reference's event `details` is oneOf dozens of titled objects (Server Available,
    Server Failed, …), most without a required field: any real details object matches several,
    so `oneOf` refuses every answer. The event's `type` is the real discriminator; anyOf keeps
    the branches' own constraints."""
    if isinstance(node, list):
        return [_any_of_titled(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _any_of_titled(v) for k, v in node.items()}
    branches = out.get("oneOf")
    if isinstance(branches, list) and all(isinstance(b, dict) and "title" in b for b in branches):
        out["anyOf"] = out.pop("oneOf")
    return out


if __name__ == "__main__":
    generate_schemas.SCHEMAS = OBSERVABILITY_SCHEMAS
    generate_schemas.main(sys.argv)
    path = generate_schemas.OUT / "event-list.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(_any_of_titled(doc), indent=1) + "\n", encoding="utf-8")
