"""One-off reads through plain httpx: redirects followed by httpx, bounded, one-line reasons."""

from __future__ import annotations

import httpx

from koinonia_infra.measure.fetch import fetch


def test_a_redirect_is_followed_to_the_final_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(301, headers={"Location": "/v2/health"})
        return httpx.Response(200, json={"status": "ok", "instance": "api-2"})

    fetched = fetch("http://api.test/health", transport=httpx.MockTransport(handler))
    assert fetched.sample.status == 200
    assert fetched.sample.upstream == "api-2"
    assert fetched.json() == ({"status": "ok", "instance": "api-2"}, None)


def test_a_redirect_loop_is_a_one_line_reason() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(302, headers={"Location": "/health"})

    fetched = fetch("http://api.test/health", transport=httpx.MockTransport(handler))
    assert fetched.sample.error == "redirect loop: more than 5 redirects (api.test)"
    assert len(seen) == 6  # the request and 5 redirects, then httpx gives up
