"""Every answer the control plane serves validates against the schema Render's published
OpenAPI reference gives that endpoint (tests/contract/schemas/), and the limits and headers
follow Render's rate-limiting page."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from contract_support import Served, assert_valid, violations

from koinonia_infra.render_api import RenderClient


def _get(plane: Served, path: str, **params: str | int) -> httpx.Response:
    resp = httpx.get(plane.url + path, headers=plane.headers, params=params or None)
    assert resp.status_code == 200, resp.text
    return resp


def _wait_for(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def test_schemas_are_the_spec_and_catch_what_the_old_answers_lacked() -> None:
    # The schemas are generated from the reference, not written to fit the control plane:
    # the answers the control plane gave before lacked these, and the schemas refuse them.
    old_details = {
        "env": "node", "runtime": "node", "plan": "standard", "region": "oregon",
        "numInstances": 1, "healthCheckPath": "/health", "url": "http://127.0.0.1:1",
        "openPorts": [{"port": 1, "protocol": "TCP"}],
    }  # fmt: skip
    problems = "\n".join(violations("web-service-details", old_details))
    assert "'envSpecificDetails' is a required property" in problems
    assert "'buildPlan' is a required property" in problems
    old_deploy = {"id": "dep-x", "status": "live", "trigger": "api", "finishedAt": None}
    assert violations("deploy", old_deploy)  # finishedAt is a date-time string, never null
    assert violations("deploy", {"id": "dep-x", "trigger": "resume"})  # not in the enum


def test_every_read_answer_matches_the_reference(plane: Served) -> None:
    listed = _get(plane, "/services", limit=100).json()
    assert_valid("service-list", listed)
    assert len(listed) == 3
    for item in listed:
        service = _get(plane, f"/services/{item['service']['id']}").json()
        assert_valid("service", service)
        assert_valid("web-service-details", service["serviceDetails"])
        deploys = _get(plane, f"/services/{service['id']}/deploys").json()
        assert_valid("deploy-list", deploys)
        one = _get(plane, f"/services/{service['id']}/deploys/{deploys[0]['deploy']['id']}")
        assert_valid("deploy", one.json())
        assert_valid("env-var-list", _get(plane, f"/services/{service['id']}/env-vars").json())


def test_slugs_are_shaped_like_renders_and_never_the_name(plane: Served) -> None:
    for item in _get(plane, "/services").json():
        service = item["service"]
        assert re.fullmatch(re.escape(service["name"]) + r"-[a-z0-9]{4}", service["slug"])


def test_the_edge_is_an_image_backed_service(plane: Served) -> None:
    edge = plane.backend.by_name("koinonia-edge")
    service = _get(plane, f"/services/{edge.id}").json()
    assert service["imagePath"] == "docker.io/library/caddy:2.6.4-alpine"
    assert "repo" not in service
    assert service["serviceDetails"]["runtime"] == "image"
    assert set(service["serviceDetails"]["envSpecificDetails"]) >= {"dockerCommand"}
    deploy = _get(plane, f"/services/{edge.id}/deploys").json()[0]["deploy"]
    assert deploy["image"]["ref"] == "docker.io/library/caddy:2.6.4-alpine"
    assert "commit" not in deploy


def test_write_answers_match_the_reference(plane: Served) -> None:
    one = plane.backend.by_name("koinonia-sms-backend")
    base = f"{plane.url}/services/{one.id}"
    with httpx.Client(headers=plane.headers) as http:
        created = http.post(base + "/deploys", json={"clearCache": "do_not_clear"})
        assert created.status_code == 201
        assert_valid("deploy", created.json())
        assert created.json()["trigger"] == "api"
        _wait_for(lambda: one.deploys[0].status == "live")

        body = [{"key": "NODE_ENV", "value": "staging"}, {"key": "PORT", "value": "8080"}]
        assert_valid("env-var-input-array", body)
        bulk = http.put(base + "/env-vars", json=body)
        assert bulk.status_code == 200
        assert_valid("env-var-list", bulk.json())
        single = http.put(base + "/env-vars/LOG_LEVEL", json={"value": "info"})
        assert single.status_code == 200
        assert_valid("env-var", single.json())

        # Spec: suspend and resume answer 202, restart 200, all without a body.
        assert http.post(base + "/suspend").status_code == 202
        assert http.post(base + "/resume").status_code == 202
        restarted = http.post(base + "/restart")
        assert restarted.status_code == 200

        missing = http.get(f"{plane.url}/services/srv-nope")
        assert missing.status_code == 404
        assert_valid("error", missing.json())


def test_create_service_answers_service_and_deploy(plane: Served) -> None:
    body = {
        "type": "web_service",
        "name": "koinonia-sms-backend-3",
        "ownerId": "tea-sandbox0000000000000",
        "repo": "https://github.com/koinonia/koinonia-sms-backend",
        "branch": "main",
        "envVars": [{"key": "NODE_ENV", "value": "production"}],
        "serviceDetails": {
            "runtime": "node",
            "plan": "standard",
            "envSpecificDetails": {"buildCommand": "npm ci", "startCommand": "npm start"},
            "healthCheckPath": "/health",
        },
    }
    assert_valid("service-post", body)
    created = httpx.post(f"{plane.url}/services", json=body, headers=plane.headers)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert_valid("service-and-deploy", answer)
    assert_valid("web-service-details", answer["service"]["serviceDetails"])
    deploy = _get(plane, f"/services/{answer['service']['id']}/deploys/{answer['deployId']}")
    assert_valid("deploy", deploy.json())


def test_every_answer_carries_the_rate_limit_headers(plane: Served) -> None:
    one = plane.backend.by_name("koinonia-sms-backend")
    with httpx.Client(headers=plane.headers) as http:
        answers = [
            http.get(f"{plane.url}/services"),
            http.get(f"{plane.url}/services/{one.id}"),
            http.get(f"{plane.url}/services/srv-nope"),
            http.post(f"{plane.url}/services/{one.id}/suspend"),
        ]
    for resp in answers:
        for header in ("Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset"):
            assert header in resp.headers, (resp.request.url, header)
        # "Time at which the current rate limit window resets in UTC Epoch Seconds".
        assert int(resp.headers["Ratelimit-Reset"]) == int(plane.clock[0]) + 60
    assert answers[-1].headers["Ratelimit-Limit"] == "10"
    assert answers[-1].headers["Ratelimit-Remaining"] == "9"


@pytest.mark.parametrize("action", ["suspend", "resume", "deploys"])
def test_eleventh_call_in_a_minute_on_one_service_is_429(plane: Served, action: str) -> None:
    one = plane.backend.by_name("koinonia-sms-backend")
    two = plane.backend.by_name("koinonia-sms-backend-2")
    with httpx.Client(headers=plane.headers) as http:
        for _ in range(10):
            _wait_for(lambda: not one.deploying)
            resp = http.post(f"{plane.url}/services/{one.id}/{action}", json={})
            assert resp.status_code in (201, 202), resp.text
        limited = http.post(f"{plane.url}/services/{one.id}/{action}", json={})
        assert limited.status_code == 429
        assert_valid("error", limited.json())
        assert limited.headers["Ratelimit-Remaining"] == "0"
        assert limited.headers["Ratelimit-Limit"] == "10"
        assert int(limited.headers["Ratelimit-Reset"]) == int(plane.clock[0]) + 60
        # The limit is per service.
        other = http.post(f"{plane.url}/services/{two.id}/{action}", json={})
        assert other.status_code in (201, 202)
        plane.clock[0] += 60.5
        _wait_for(lambda: not one.deploying)
        again = http.post(f"{plane.url}/services/{one.id}/{action}", json={})
        assert again.status_code in (201, 202)


def test_client_waits_out_the_reset_header_then_succeeds(plane: Served) -> None:
    one = plane.backend.by_name("koinonia-sms-backend")
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        plane.clock[0] += seconds

    client = RenderClient(
        plane.url, "contract-token-0123456789", sleep=sleep, wall=lambda: plane.clock[0],
        retry_deadline=120, clock=lambda: plane.clock[0],
    )  # fmt: skip
    with client:
        for _ in range(10):
            client.suspend(one.id)
        assert slept == []
        client.suspend(one.id)  # the 11th: 429, then the client waits for Ratelimit-Reset
    assert len(slept) == 1
    assert 59.0 <= slept[0] <= 62.0, slept


def test_render_timing_a_resume_before_the_suspend_acts_cancels_it() -> None:
    import dataclasses

    from contract_support import serve_plane

    from koinonia_infra.sandbox.timing import RENDER

    timing = dataclasses.replace(RENDER, suspend_delay_seconds=0.5)
    for plane in serve_plane(timing):
        one = plane.backend.by_name("koinonia-sms-backend")
        with httpx.Client(headers=plane.headers) as http:
            assert http.post(f"{plane.url}/services/{one.id}/suspend").status_code == 202
            assert http.get(f"{plane.url}/services/{one.id}").json()["suspended"] == "not_suspended"
            assert http.post(f"{plane.url}/services/{one.id}/resume").status_code == 202
            time.sleep(1.0)
            assert http.get(f"{plane.url}/services/{one.id}").json()["suspended"] == "not_suspended"
            resumed = http.get(f"{plane.url}/services/{one.id}/deploys").json()[0]["deploy"]
        assert resumed["trigger"] == "service_resumed"
        assert not any(a.startswith("suspend") for a in plane.backend.actions)
