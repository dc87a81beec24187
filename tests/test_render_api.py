"""Render REST client against `httpx.MockTransport`: what the caller and the user would see."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from koinonia_infra.descriptor import parse_descriptor
from koinonia_infra.errors import OperationFailed, RenderApiError
from koinonia_infra.render_api import ApiKeyRejected, ApiUnreachable, RenderClient

KEY = "sentinel-render-key-not-real"
BASE = "https://api.example.test/v1"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """Sleep advances a fake monotonic clock, so deadline tests are instant and exact."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client(handler: Handler, fake: FakeTime | None = None, **kwargs: Any) -> RenderClient:
    fake = fake or FakeTime()
    return RenderClient(
        BASE,
        KEY,
        transport=httpx.MockTransport(handler),
        sleep=fake.sleep,
        clock=fake.clock,
        **kwargs,
    )


def service_json(i: int, name: str = "koinonia-sms-backend") -> dict[str, Any]:
    return {
        "id": f"srv-{i}",
        "name": name,
        "slug": f"{name}-{i}",
        "suspended": "not_suspended",
        "serviceDetails": {"url": f"https://{name}-{i}.onrender.com", "plan": "starter"},
        "someFutureField": {"nested": True},
    }


def test_bearer_auth_and_unknown_fields_tolerated() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=service_json(1))

    svc = client(handler).get_service("srv-1")
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert seen[0].url.path == "/v1/services/srv-1"
    assert (svc.id, svc.slug, svc.suspended) == ("srv-1", "koinonia-sms-backend-1", "not_suspended")
    assert svc.url == "https://koinonia-sms-backend-1.onrender.com"


def test_find_services_follows_cursor_across_pages() -> None:
    total = 230
    calls: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append(params)
        start = int(params.get("cursor", "c0")[1:])
        limit = int(params["limit"])
        items = [
            {"cursor": f"c{i + 1}", "service": service_json(i)}
            for i in range(start, min(start + limit, total))
        ]
        return httpx.Response(200, json=items)

    services = client(handler).find_services("koinonia-sms-backend")
    assert [s.id for s in services] == [f"srv-{i}" for i in range(total)]
    assert len(calls) == 3
    assert all(c["limit"] == "100" and c["name"] == "koinonia-sms-backend" for c in calls)
    assert "cursor" not in calls[0]
    assert [c.get("cursor") for c in calls[1:]] == ["c100", "c200"]


def test_429_waits_for_ratelimit_reset_then_succeeds() -> None:
    fake = FakeTime()
    answers = iter(
        [
            httpx.Response(429, headers={"Ratelimit-Reset": "7"}, json={"message": "slow"}),
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(200, json=service_json(1)),
        ]
    )
    svc = client(lambda _r: next(answers), fake).get_service("srv-1")
    assert svc.id == "srv-1"
    assert len(fake.sleeps) == 2
    # Honours the server's reset, with at most a little jitter on top.
    assert 7.0 <= fake.sleeps[0] <= 8.0
    assert 3.0 <= fake.sleeps[1] <= 4.0


def test_5xx_retried_with_growing_backoff_then_success() -> None:
    fake = FakeTime()
    statuses = iter([502, 503, 500, 200])

    def handler(_request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 200:
            deploy = {"id": "dep-1", "status": "live", "commit": {"id": "abc", "message": "m"}}
            return httpx.Response(200, json=[{"cursor": "x", "deploy": deploy}])
        return httpx.Response(status, text="upstream trouble")

    deploy = client(handler, fake).latest_deploy("srv-1")
    assert deploy is not None
    assert (deploy.id, deploy.status, deploy.commit_id, deploy.commit_message) == (
        "dep-1",
        "live",
        "abc",
        "m",
    )
    assert len(fake.sleeps) == 3
    assert fake.sleeps[0] < fake.sleeps[2]  # exponential: 0.25 to 0.5 s, then 1 to 2 s


def test_retry_deadline_exhausted_names_host_and_status() -> None:
    fake = FakeTime()
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    api = client(handler, fake, retry_deadline=10.0)
    with pytest.raises(RenderApiError) as info:
        api.get_service("srv-1")
    message = str(info.value)
    assert "api.example.test" in message
    assert "HTTP 503" in message
    assert "10s" in message
    assert calls > 2
    assert fake.now - 1000.0 <= 10.0  # never slept past the deadline


def test_429_reset_beyond_deadline_fails_without_sleeping_it() -> None:
    fake = FakeTime()
    api = client(
        lambda _r: httpx.Response(429, headers={"Ratelimit-Reset": "120"}), fake, retry_deadline=60
    )
    with pytest.raises(RenderApiError, match=r"rate limited \(429\)"):
        api.suspend("srv-1")
    assert fake.sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_message_never_contains_the_key(status: int) -> None:
    api = client(lambda _r: httpx.Response(status, json={"message": f"bad key {KEY}"}))
    with pytest.raises(RenderApiError) as info:
        api.get_service("srv-1")
    message = str(info.value)
    assert isinstance(info.value, ApiKeyRejected)
    assert "the Render API key was rejected" in message
    assert KEY not in message
    assert KEY[:12] not in message


def test_404_names_the_service_id() -> None:
    api = client(lambda _r: httpx.Response(404, json={"message": "not found"}))
    with pytest.raises(RenderApiError, match="srv-missing"):
        api.get_service("srv-missing")


def test_404_of_a_deploy_names_the_deploy_and_the_service() -> None:
    api = client(lambda _r: httpx.Response(404, json={"message": "not found"}))
    with pytest.raises(RenderApiError, match="deploy dep-7 of Render service srv-1 not found"):
        api.get_deploy("srv-1", "dep-7")


def test_409_says_a_deploy_is_in_progress() -> None:
    api = client(lambda _r: httpx.Response(409, json={"message": "conflict"}))
    with pytest.raises(RenderApiError, match="a deploy is already in progress for srv-9"):
        api.trigger_deploy("srv-9")


def test_409_of_a_suspended_service_does_not_blame_a_deploy() -> None:
    api = client(lambda _r: httpx.Response(409, json={"message": "service is suspended"}))
    with pytest.raises(RenderApiError, match="srv-9 is suspended; resume it first") as info:
        api.trigger_deploy("srv-9")
    assert "in progress" not in str(info.value)


def test_read_timeout_retried_for_a_get_but_never_for_a_post() -> None:
    fake = FakeTime()
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1 or request.method == "POST":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json=service_json(1))

    api = client(handler, fake)
    assert api.get_service("srv-1").id == "srv-1"
    assert calls == ["GET", "GET"]
    assert len(fake.sleeps) == 1
    # A suspend that timed out may have been applied: repeating it is the caller's decision.
    with pytest.raises(RenderApiError, match=r"timed out \(POST /services/srv-1/suspend\)"):
        api.suspend("srv-1")
    assert calls == ["GET", "GET", "POST"]


def test_connection_refused_names_the_host() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    fake = FakeTime()
    with pytest.raises(ApiUnreachable, match=r"api\.example\.test unreachable"):
        client(handler, fake).get_service("srv-1")
    assert len(fake.sleeps) == 2  # three tries, briefly: a refused connection is rarely a blip


def test_env_vars_paginates_into_a_dict() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/services/srv-1/env-vars"
        return httpx.Response(
            200,
            json=[
                {"cursor": "a", "envVar": {"key": "NODE_ENV", "value": "production"}},
                {"cursor": "b", "envVar": {"key": "PORT", "value": "8080"}},
            ],
        )

    assert client(handler).env_vars("srv-1") == {"NODE_ENV": "production", "PORT": "8080"}


def test_trigger_then_wait_for_deploy_until_live() -> None:
    fake = FakeTime()
    statuses = iter(["build_in_progress", "update_in_progress", "live"])
    posted: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posted.append(json.loads(request.content))
            return httpx.Response(201, json={"id": "dep-2", "status": "created"})
        assert request.url.path == "/v1/services/srv-1/deploys/dep-2"
        return httpx.Response(200, json={"id": "dep-2", "status": next(statuses)})

    api = client(handler, fake)
    deploy = api.trigger_deploy("srv-1")
    polled: list[str] = []
    done = api.wait_for_deploy(
        "srv-1", deploy.id, timeout=30, on_poll=lambda d: polled.append(d.status)
    )
    assert done.status == "live"
    assert polled == ["build_in_progress", "update_in_progress", "live"]
    assert posted == [{}]


def test_wait_for_deploy_returns_a_failed_deploy() -> None:
    api = client(lambda _r: httpx.Response(200, json={"id": "dep-3", "status": "update_failed"}))
    assert api.wait_for_deploy("srv-1", "dep-3", timeout=5).failed


def test_wait_for_deploy_deadline_names_service_and_last_status() -> None:
    fake = FakeTime()
    api = client(
        lambda _r: httpx.Response(200, json={"id": "dep-4", "status": "update_in_progress"}), fake
    )
    with pytest.raises(OperationFailed, match=r"srv-1.*dep-4 still update_in_progress after 20s"):
        api.wait_for_deploy("srv-1", "dep-4", timeout=20)
    assert 20.0 <= fake.now - 1000.0 < 21.0


def descriptor(**extra: Any) -> Any:
    return parse_descriptor(
        {
            "edgeUrl": "http://127.0.0.1:1",
            "instances": [
                {
                    "number": 1,
                    "name": "a",
                    "serviceId": "srv-1",
                    "url": "http://x",
                    "privateAddress": "a:8080",
                }
            ],
            **extra,
        },
        source="test",
    )


def test_for_descriptor_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RENDER_API_KEY", raising=False)
    monkeypatch.delenv("RENDER_APIKEY", raising=False)
    monkeypatch.delenv("RENDER_API_URL", raising=False)
    assert RenderClient.for_descriptor(descriptor()) is None

    monkeypatch.setenv("RENDER_APIKEY", "k-env")
    # The user's key never goes to a URL read from a descriptor (a file anyone can hand over).
    api = RenderClient.for_descriptor(descriptor(renderApiUrl="http://desc.test/v1"))
    assert api is not None
    assert api.base_url == "https://api.render.com/v1"

    monkeypatch.setenv("RENDER_API_URL", "http://env.test/v1")
    api = RenderClient.for_descriptor(descriptor(renderApiUrl="http://desc.test/v1"))
    assert api is not None
    assert api.base_url == "http://env.test/v1"
    api = RenderClient.for_descriptor(descriptor(), base_url="http://flag.test/v1")
    assert api is not None
    assert api.base_url == "http://flag.test/v1"

    # A descriptor with its own key (the sandbox's) keeps its own URL: $RENDER_API_URL is for the
    # user's Render key and must not receive the sandbox token (nor the other way round).
    own = descriptor(renderApiKey="sandbox-token", renderApiUrl="http://127.0.0.1:5/v1")
    api = RenderClient.for_descriptor(own)
    assert api is not None
    assert api.base_url == "http://127.0.0.1:5/v1"
    api = RenderClient.for_descriptor(own, base_url="http://flag.test/v1")
    assert api is not None
    assert api.base_url == "http://flag.test/v1"
    monkeypatch.delenv("RENDER_APIKEY")
    assert RenderClient.for_descriptor(descriptor(renderApiKey="sandbox-token")) is not None
