"""The survivors' health check, against httpx.MockTransport."""

from __future__ import annotations

import httpx

from koinonia_infra.deploy.destroy import http_health
from koinonia_infra.descriptor import InstanceRef

INSTANCE = InstanceRef(
    number=1, name="koinonia-sms-backend", service_id="srv-1",
    url="https://api1.example.test/", private_address="a:8080",
)  # fmt: skip


def _check(handler: httpx.MockTransport) -> tuple[bool, str]:
    result = http_health("/health", transport=handler)(INSTANCE)
    return result.ok, result.detail


def test_healthy_when_200_and_status_ok() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"status": "ok", "database": "connected"})

    ok, detail = _check(httpx.MockTransport(handler))
    assert ok
    assert detail == "ok"
    assert seen == ["https://api1.example.test/health"]


def test_degraded_names_the_dependency_that_is_down() -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(
            503, json={"status": "degraded", "database": "down", "redis": "ok"}
        )
    )
    assert _check(transport) == (False, "HTTP 503 degraded (database down)")


def test_unreachable_is_unhealthy() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    # The one-line reason every command gives for a request without an answer.
    assert _check(httpx.MockTransport(handler)) == (
        False,
        "ConnectError: refused (api1.example.test)",
    )


def test_a_200_that_is_not_json_is_unhealthy() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>It works!</html>"))
    ok, detail = _check(transport)
    assert not ok
    assert detail.startswith("HTTP 200: body is not JSON")
