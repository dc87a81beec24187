"""The control plane against the real sandbox: Render's shapes, auth, and real process effects."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from koinonia_infra.sandbox.state import ProcessRecord, is_alive, read_state

pytestmark = pytest.mark.integration


def _record(state_dir: Path, role: str) -> ProcessRecord | None:
    state = read_state(state_dir)
    assert state is not None
    return next((r for r in state.processes if r.role == role), None)


def _wait_deploy(
    api: httpx.Client, service_id: str, deploy_id: str, timeout: float = 30
) -> list[str]:
    """Poll a deploy to a terminal state; returns every distinct status seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get(f"/services/{service_id}/deploys/{deploy_id}").json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status not in ("created", "build_in_progress", "update_in_progress"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"deploy {deploy_id} still {seen[-1]} after {timeout}s")


def _health(url: str) -> httpx.Response:
    return httpx.get(url + "/health", timeout=5)


def test_requires_the_bearer_token(sandbox: Any) -> None:
    base = sandbox.api_url
    assert httpx.get(f"{base}/services").status_code == 401
    wrong = httpx.get(f"{base}/services", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert sandbox.token not in wrong.text
    assert (
        httpx.post(
            f"{base}/services/{sandbox.descriptor.instances[0].service_id}/suspend"
        ).status_code
        == 401
    )


def test_services_in_render_shapes(
    sandbox: Any, api: httpx.Client, traffic_through_edge: Any
) -> None:
    listed = api.get("/services", params={"limit": 100}).json()
    names = sorted(item["service"]["name"] for item in listed)
    assert names == ["koinonia-edge", "koinonia-sms-backend", "koinonia-sms-backend-2"]
    assert all(set(item) == {"cursor", "service"} for item in listed)

    one = api.get("/services", params={"name": "koinonia-sms-backend-2"}).json()
    assert [i["service"]["id"] for i in one] == [sandbox.descriptor.instance(2).service_id]

    first = api.get("/services", params={"limit": 1}).json()
    rest = api.get("/services", params={"limit": 100, "cursor": first[0]["cursor"]}).json()
    assert len(first) == 1
    assert len(rest) == 2
    assert first[0]["service"]["id"] not in [i["service"]["id"] for i in rest]

    inst = sandbox.descriptor.instance(1)
    service = api.get(f"/services/{inst.service_id}").json()
    assert service["suspended"] == "not_suspended"
    assert service["slug"] == inst.name
    assert service["serviceDetails"]["url"] == inst.url

    deploys = api.get(f"/services/{inst.service_id}/deploys", params={"limit": 1}).json()
    deploy = deploys[0]["deploy"]
    assert deploy["status"] == "live"
    assert set(deploy) >= {
        "id",
        "status",
        "commit",
        "createdAt",
        "updatedAt",
        "finishedAt",
        "trigger",
    }
    assert set(deploy["commit"]) >= {"id", "message"}

    missing = api.get("/services/srv-doesnotexist00000000")
    assert missing.status_code == 404
    assert "srv-doesnotexist00000000" in missing.json()["message"]
    assert api.get(f"/services/{inst.service_id}/deploys/dep-nope").status_code == 404


def test_suspend_stops_the_process_and_resume_starts_it(
    sandbox: Any, api: httpx.Client, traffic_through_edge: Any
) -> None:
    inst = sandbox.descriptor.instance(1)
    before = _record(sandbox.state_dir, "api-1")
    assert before is not None
    assert is_alive(before)
    with traffic_through_edge(sandbox.edge_url) as traffic:
        time.sleep(0.5)
        assert api.post(f"/services/{inst.service_id}/suspend").status_code == 202
        deadline = time.monotonic() + 15
        while is_alive(before):
            assert time.monotonic() < deadline, "suspended instance's process still running"
            time.sleep(0.05)
        assert api.get(f"/services/{inst.service_id}").json()["suspended"] == "suspended"
        with pytest.raises(httpx.TransportError):
            _health(inst.url)
        traffic.upstreams.clear()
        time.sleep(1.5)
        during = dict(traffic.upstreams)

        assert api.post(f"/services/{inst.service_id}/resume").status_code == 202
        deadline = time.monotonic() + 15
        while True:
            try:
                if _health(inst.url).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "resumed instance never became healthy"
            time.sleep(0.1)
    assert traffic.failed == [], f"edge failed {len(traffic.failed)} of {traffic.total}"
    assert set(during) == {sandbox.descriptor.instance(2).private_address}
    after = _record(sandbox.state_dir, "api-1")
    assert after is not None
    assert after.pid != before.pid
    assert is_alive(after)
    assert api.get(f"/services/{inst.service_id}").json()["suspended"] == "not_suspended"


def test_deploy_goes_live_on_a_new_process_without_failed_requests(
    sandbox: Any, api: httpx.Client, traffic_through_edge: Any
) -> None:
    inst = sandbox.descriptor.instance(2)
    old = _record(sandbox.state_dir, "api-2")
    assert old is not None
    previous = api.get(f"/services/{inst.service_id}/deploys").json()[0]["deploy"]
    with (
        traffic_through_edge(sandbox.edge_url) as traffic,
        traffic_through_edge(inst.url, workers=2) as direct,
    ):
        time.sleep(0.5)
        created = api.post(f"/services/{inst.service_id}/deploys", json={})
        assert created.status_code == 201
        deploy = created.json()
        assert deploy["status"] == "created"
        conflict = api.post(f"/services/{inst.service_id}/deploys", json={})
        assert conflict.status_code == 409
        seen = _wait_deploy(api, inst.service_id, deploy["id"])
        time.sleep(0.5)
    assert seen[-1] == "live", seen
    assert "update_in_progress" in seen
    assert traffic.total > 50
    assert traffic.failed == [], f"edge failed {len(traffic.failed)} of {traffic.total}"
    # The instance's own address keeps answering too: the socket is handed over, not reopened.
    assert direct.total > 20
    assert direct.failed == [], f"direct failed {len(direct.failed)} of {direct.total}"
    new = _record(sandbox.state_dir, "api-2")
    assert new is not None
    assert new.pid != old.pid
    assert is_alive(new)
    assert not is_alive(old)
    assert _health(inst.url).status_code == 200
    listed = [i["deploy"] for i in api.get(f"/services/{inst.service_id}/deploys").json()]
    assert listed[0]["id"] == deploy["id"]
    assert next(d for d in listed if d["id"] == previous["id"])["status"] == "deactivated"


def test_failed_deploy_keeps_the_old_process_serving(
    sandbox: Any, api: httpx.Client, traffic_through_edge: Any
) -> None:
    inst = sandbox.descriptor.instance(1)
    old = _record(sandbox.state_dir, "api-1")
    assert old is not None
    marked = api.post(f"/_sandbox/services/{inst.service_id}/fail-next-deploy")
    assert marked.status_code == 200
    with traffic_through_edge(sandbox.edge_url) as traffic:
        deploy = api.post(f"/services/{inst.service_id}/deploys", json={}).json()
        seen = _wait_deploy(api, inst.service_id, deploy["id"])
    assert seen[-1] == "update_failed", seen
    assert traffic.failed == []
    current = _record(sandbox.state_dir, "api-1")
    assert current is not None
    assert current.pid == old.pid
    assert is_alive(old)
    assert _health(inst.url).status_code == 200
    deploys = [
        i["deploy"]["status"] for i in api.get(f"/services/{inst.service_id}/deploys").json()
    ]
    assert deploys[:2] == ["update_failed", "live"]


def test_env_vars_list_and_put_reach_the_next_deploy(
    sandbox: Any, api: httpx.Client, traffic_through_edge: Any
) -> None:
    inst = sandbox.descriptor.instance(1)
    listed = api.get(f"/services/{inst.service_id}/env-vars").json()
    keys = {item["envVar"]["key"] for item in listed}
    assert {"DATABASE_URL", "REDIS_URL", "NODE_ENV"} <= keys
    assert all(set(item) == {"cursor", "envVar"} for item in listed)

    put = api.put(f"/services/{inst.service_id}/env-vars/NODE_ENV", json={"value": "staging"})
    assert put.status_code == 200
    assert put.json() == {"key": "NODE_ENV", "value": "staging"}
    # Not applied until the next deploy, as on Render.
    assert _health(inst.url).json()["environment"] == "production"
    deploy = api.post(f"/services/{inst.service_id}/deploys", json={}).json()
    assert _wait_deploy(api, inst.service_id, deploy["id"])[-1] == "live"
    assert _health(inst.url).json()["environment"] == "staging"
    other = api.get(f"/services/{sandbox.descriptor.instance(2).service_id}/env-vars").json()
    assert {i["envVar"]["key"]: i["envVar"]["value"] for i in other}["NODE_ENV"] == "production"
    bad = api.put(f"/services/{inst.service_id}/env-vars/NODE_ENV", json={"nope": 1})
    assert bad.status_code == 400
