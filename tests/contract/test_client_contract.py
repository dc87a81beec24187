"""The client parses answers built from the reference itself (only what its schemas require,
filled with values of the declared type and the first value of each enum), not from our own
control plane: a field the client insists on that Render may leave out fails here."""

from __future__ import annotations

import json
from typing import Any

import httpx
from contract_support import assert_valid, schema

from koinonia_infra.render_api import RenderClient


def minimal(node: dict[str, Any], defs: dict[str, Any], path: str = "x") -> Any:
    """The smallest instance of `node`: required properties only, recursively."""
    if "$ref" in node:
        return minimal(defs[node["$ref"].removeprefix("#/$defs/")], defs, path)
    for union in ("oneOf", "anyOf"):
        if union in node:
            return minimal(node[union][0], defs, path)
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type", "object")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        props = node.get("properties", {})
        return {k: minimal(props.get(k, {}), defs, f"{path}-{k}") for k in node.get("required", [])}
    if kind == "array":
        return [minimal(node.get("items", {}), defs, path)]
    if kind == "integer":
        return 8080
    if kind == "boolean":
        return False
    if node.get("format") == "date-time":
        return "2021-06-17T08:15:30Z"
    return path


def minimal_of(schema_name: str, /, **overrides: Any) -> Any:
    doc = schema(schema_name)
    built = minimal(doc, doc.get("$defs", {}))
    if isinstance(built, dict):
        built.update(overrides)
    assert_valid(schema_name, built)
    return built


def client_answering(routes: dict[str, Any]) -> RenderClient:
    def handler(request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url.path}"
        assert key in routes, f"unexpected {key}"
        status, body = routes[key]
        return httpx.Response(status, content=b"" if body is None else json.dumps(body).encode())

    return RenderClient("https://api.render.test/v1", "k", transport=httpx.MockTransport(handler))


def test_client_parses_minimal_services_and_deploys() -> None:
    service = minimal_of("service", id="srv-abc", name="koinonia-sms-backend")
    deploy = minimal_of("deploy", id="dep-abc")
    routes = {
        "GET /v1/services/srv-abc": (200, service),
        "GET /v1/services": (200, [{"cursor": "c1", "service": service}]),
        "GET /v1/services/srv-abc/deploys": (200, [{"cursor": "c1", "deploy": deploy}]),
        "GET /v1/services/srv-abc/deploys/dep-abc": (200, deploy),
        "POST /v1/services/srv-abc/deploys": (201, deploy),
        "POST /v1/services/srv-abc/suspend": (202, None),
        "POST /v1/services/srv-abc/resume": (202, None),
        "GET /v1/services/srv-abc/env-vars": (
            200,
            [minimal_of("env-var-list")[0] | {"envVar": {"key": "NODE_ENV", "value": "x"}}],
        ),
    }
    with client_answering(routes) as api:
        got = api.get_service("srv-abc")
        assert (got.id, got.name) == ("srv-abc", "koinonia-sms-backend")
        assert got.is_suspended is (service["suspended"] == "suspended")
        assert got.slug == service["slug"]
        assert [s.id for s in api.find_services("koinonia-sms-backend")] == ["srv-abc"]
        assert api.latest_deploy("srv-abc") is not None
        assert api.get_deploy("srv-abc", "dep-abc").id == "dep-abc"
        assert api.trigger_deploy("srv-abc").id == "dep-abc"
        api.suspend("srv-abc")
        api.resume("srv-abc")
        assert api.env_vars("srv-abc") == {"NODE_ENV": "x"}


def test_client_reads_trigger_and_image_of_a_full_deploy() -> None:
    deploy = {
        "id": "dep-1",
        "status": "live",
        "trigger": "service_resumed",
        "image": {"ref": "docker.io/library/caddy:2.6.4-alpine", "sha": "sha256:00"},
        "startedAt": "2021-06-17T08:15:30Z",
        "finishedAt": "2021-06-17T08:16:30Z",
        "createdAt": "2021-06-17T08:15:00Z",
        "updatedAt": "2021-06-17T08:16:30Z",
    }
    assert_valid("deploy", deploy)
    with client_answering({"GET /v1/services/s/deploys/dep-1": (200, deploy)}) as api:
        got = api.get_deploy("s", "dep-1")
    assert got.trigger == "service_resumed"
    assert got.image_ref == "docker.io/library/caddy:2.6.4-alpine"
    assert got.succeeded
    assert got.started_at is not None


def test_client_accepts_a_queued_202_without_body() -> None:
    deploy = minimal_of("deploy", id="dep-q", status="queued")
    routes = {
        "POST /v1/services/s/deploys": (202, None),
        "GET /v1/services/s/deploys": (200, [{"cursor": "c", "deploy": deploy}]),
    }
    with client_answering(routes) as api:
        got = api.trigger_deploy("s")
    assert (got.id, got.in_progress) == ("dep-q", True)
