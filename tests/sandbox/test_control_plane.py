"""The control plane: Render's shapes, auth and errors through the real `RenderClient` over a
fake backend (fast), then against the real sandbox (real process effects)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from koinonia_infra.errors import RenderApiError
from koinonia_infra.render_api import RenderClient
from koinonia_infra.sandbox.control_plane import (
    Deploy,
    Service,
    create_control_plane,
    render_id,
)
from koinonia_infra.sandbox.state import ProcessRecord, is_alive, read_state
from koinonia_infra.sandbox.timing import FAST

integration = pytest.mark.integration
TOKEN = "sandbox-token-0123456789"
COMMIT = "c0ffee" * 6 + "c0ff"


# ---- over a fake backend: the HTTP contract, in milliseconds ---------------------------------


class FakeBackend:
    """Records what the control plane asked for; a deploy waits for `release` before finishing."""

    def __init__(self) -> None:
        self.timing = FAST
        self.services: dict[str, Service] = {}
        self.actions: list[str] = []
        self.release = asyncio.Event()
        for number in (1, 2):
            name = "koinonia-sms-backend" + ("" if number == 1 else f"-{number}")
            svc = Service(
                id=render_id("srv"),
                name=name,
                kind="instance",
                url=f"http://127.0.0.1:{8000 + number}",
                port=8000 + number,
                number=number,
                env={"NODE_ENV": "production", "DATABASE_URL": "postgres://u:p@h/db"},
            )
            first = Deploy(render_id("dep"), "live", COMMIT, "initial", "new_commit", {})
            svc.deploys.append(first)
            self.services[svc.id] = svc

    def instance(self, number: int) -> Service:
        return next(s for s in self.services.values() if s.number == number)

    async def suspend(self, service: Service) -> None:
        self.actions.append(f"suspend {service.name}")

    async def resume(self, service: Service) -> None:
        self.actions.append(f"resume {service.name}")

    async def restart(self, service: Service) -> None:
        self.actions.append(f"restart {service.name}")

    async def run_deploy(self, service: Service, deploy: Deploy, fail: float | None) -> None:
        deploy.set_status("build_in_progress")
        await self.release.wait()
        deploy.set_status("update_failed" if fail is not None else "live")

    def add_service(self, service: Service) -> None:
        raise AssertionError("not used here")


class Served:
    def __init__(self, backend: FakeBackend, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.url = url
        self.loop = loop

    def client(self, token: str = TOKEN) -> RenderClient:
        return RenderClient(self.url, token, timeout=5, retry_deadline=2)

    def finish_deploys(self) -> None:
        self.loop.call_soon_threadsafe(self.backend.release.set)


@pytest.fixture
def plane() -> Iterator[Served]:
    """The control plane on 127.0.0.1 (its own event loop in a thread) over `FakeBackend`."""
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    async def start() -> None:
        backend = FakeBackend()
        runner = web.AppRunner(create_control_plane(backend, TOKEN), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        started.update(backend=backend, runner=runner, url=f"http://127.0.0.1:{port}/v1")
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    assert ready.wait(10)
    try:
        yield Served(started["backend"], started["url"], loop)
    finally:
        asyncio.run_coroutine_threadsafe(started["runner"].cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_no_or_wrong_token_is_401_and_the_client_says_the_key_was_rejected(plane: Served) -> None:
    assert httpx.get(f"{plane.url}/services").status_code == 401
    sid = plane.backend.instance(1).id
    assert httpx.post(f"{plane.url}/services/{sid}/suspend").status_code == 401
    with pytest.raises(RenderApiError, match="key was rejected") as info:
        plane.client("wrong-token").get_service(sid)
    assert "wrong-token" not in str(info.value)
    assert plane.backend.actions == []


def test_services_read_through_the_client_in_render_shapes(plane: Served) -> None:
    with plane.client() as api:
        found = api.find_services("koinonia-sms-backend-2")
        assert [s.id for s in found] == [plane.backend.instance(2).id]
        svc = api.get_service(found[0].id)
        assert (svc.name, svc.suspended) == ("koinonia-sms-backend-2", "not_suspended")
        # Render's shape, `<name>-<4 lowercase alphanumerics>`: never the name itself.
        assert svc.slug is not None
        assert re.fullmatch(r"koinonia-sms-backend-2-[a-z0-9]{4}", svc.slug)
        assert svc.url == "http://127.0.0.1:8002"
        assert api.env_vars(svc.id)["NODE_ENV"] == "production"
        with pytest.raises(RenderApiError, match="srv-nope0000 not found"):
            api.get_service("srv-nope0000")
        with pytest.raises(RenderApiError, match=f"deploy dep-nope of Render service {svc.id}"):
            api.get_deploy(svc.id, "dep-nope")


def test_cursor_pages_do_not_repeat_or_skip(plane: Served) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    first = httpx.get(f"{plane.url}/services", params={"limit": 1}, headers=headers).json()
    rest = httpx.get(
        f"{plane.url}/services",
        params={"limit": 100, "cursor": first[0]["cursor"]},
        headers=headers,
    ).json()
    assert all(set(item) == {"cursor", "service"} for item in first + rest)
    ids = [i["service"]["id"] for i in first + rest]
    assert sorted(ids) == sorted(plane.backend.services)
    bad = httpx.get(f"{plane.url}/services", params={"limit": 0}, headers=headers)
    assert bad.status_code == 400
    unknown = httpx.get(f"{plane.url}/nothing-here", headers=headers)
    assert unknown.status_code == 404
    assert "nothing-here" in unknown.json()["message"]


def test_deploy_409_while_in_progress_then_live_on_the_same_commit(plane: Served) -> None:
    one, two = plane.backend.instance(1), plane.backend.instance(2)
    with plane.client() as api:
        deploy = api.trigger_deploy(one.id)
        assert deploy.status == "created"
        with pytest.raises(RenderApiError, match=f"a deploy is already in progress for {one.id}"):
            api.trigger_deploy(one.id)
        with pytest.raises(RenderApiError, match="already in progress"):
            api.suspend(one.id)
        other = api.trigger_deploy(two.id)
        plane.finish_deploys()
        done = api.wait_for_deploy(one.id, deploy.id, timeout=10)
        assert done.status == "live"
        assert api.wait_for_deploy(two.id, other.id, timeout=10).status == "live"
        # Both services build the same branch, which has not moved: still the same commit.
        commits = {api.list_deploys(s.id, limit=1)[0].commit_id for s in (one, two)}
        assert commits == {COMMIT}
        assert api.list_deploys(one.id)[0].id == deploy.id
    assert plane.backend.actions == []


def test_suspend_and_resume_reach_the_backend_and_show_in_the_service(plane: Served) -> None:
    one = plane.backend.instance(1)
    with plane.client() as api:
        api.suspend(one.id)
        assert api.get_service(one.id).is_suspended
        with pytest.raises(RenderApiError, match=f"{one.id} is suspended; resume it first"):
            api.trigger_deploy(one.id)
        api.resume(one.id)
        assert not api.get_service(one.id).is_suspended
    deadline = time.monotonic() + 5
    while len(plane.backend.actions) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plane.backend.actions == [
        "suspend koinonia-sms-backend",
        "resume koinonia-sms-backend",
    ]


def test_fail_next_deploy_ends_update_failed(plane: Served) -> None:
    two = plane.backend.instance(2)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    marked = httpx.post(f"{plane.url}/_sandbox/services/{two.id}/fail-next-deploy", headers=headers)
    assert marked.status_code == 200
    with plane.client() as api:
        deploy = api.trigger_deploy(two.id)
        plane.finish_deploys()
        assert api.wait_for_deploy(two.id, deploy.id, timeout=10).status == "update_failed"


# ---- against the real sandbox ----------------------------------------------------------------


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


@integration
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


@integration
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
    assert re.fullmatch(re.escape(inst.name) + r"-[a-z0-9]{4}", service["slug"])
    assert service["serviceDetails"]["url"] == inst.url
    # The descriptor's private address is Render's `<slug>:<port>`, for the instance's port.
    assert (
        inst.private_address
        == f"{service['slug']}:{service['serviceDetails']['openPorts'][0]['port']}"
    )

    deploys = api.get(f"/services/{inst.service_id}/deploys", params={"limit": 1}).json()
    deploy = deploys[0]["deploy"]
    assert deploy["status"] == "live"
    assert set(deploy) >= {"id", "status", "commit", "createdAt", "updatedAt", "trigger"}
    assert set(deploy["commit"]) >= {"id", "message"}
    # Both services build the same branch: they start on the same commit.
    other = sandbox.descriptor.instance(2).service_id
    first_2 = api.get(f"/services/{other}/deploys", params={"limit": 1}).json()[0]["deploy"]
    assert first_2["commit"]["id"] == deploy["commit"]["id"]

    missing = api.get("/services/srv-doesnotexist00000000")
    assert missing.status_code == 404
    assert "srv-doesnotexist00000000" in missing.json()["message"]
    assert api.get(f"/services/{inst.service_id}/deploys/dep-nope").status_code == 404


@integration
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
    # The edge names the upstream it dialled: instance 2's loopback address (its `url`).
    assert set(during) == {sandbox.descriptor.instance(2).url.removeprefix("http://")}
    after = _record(sandbox.state_dir, "api-1")
    assert after is not None
    assert after.pid != before.pid
    assert is_alive(after)
    assert api.get(f"/services/{inst.service_id}").json()["suspended"] == "not_suspended"


@integration
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
    assert listed[0]["commit"]["id"] == previous["commit"]["id"]  # the branch did not move
    assert next(d for d in listed if d["id"] == previous["id"])["status"] == "deactivated"


@integration
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


@integration
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


def _env_of(api: httpx.Client, service_id: str) -> dict[str, str]:
    items = api.get(f"/services/{service_id}/env-vars", params={"limit": 100}).json()
    return {i["envVar"]["key"]: i["envVar"]["value"] for i in items}


@integration
def test_bulk_env_put_restarts_nothing_and_the_next_deploy_runs_with_it(
    sandbox: Any, api: httpx.Client
) -> None:
    inst = sandbox.descriptor.instance(2)
    before = _record(sandbox.state_dir, "api-2")
    assert before is not None
    env = _env_of(api, inst.service_id) | {"NODE_ENV": "bulk-staging"}
    # What pulumi-render's EnvVarsForService sends: the whole set, a top-level array.
    put = api.put(
        f"/services/{inst.service_id}/env-vars",
        json=[{"key": k, "value": v} for k, v in env.items()],
    )
    assert put.status_code == 200
    assert {i["envVar"]["key"]: i["envVar"]["value"] for i in put.json()} == env
    time.sleep(1.0)
    # Nothing restarted and no deploy started: the running process keeps its env.
    now = _record(sandbox.state_dir, "api-2")
    assert now is not None
    assert now.pid == before.pid
    assert _health(inst.url).json()["environment"] == "production"
    deploys = api.get(f"/services/{inst.service_id}/deploys").json()
    assert [d["deploy"]["status"] for d in deploys] == ["live"]

    deploy = api.post(f"/services/{inst.service_id}/deploys", json={}).json()
    assert _wait_deploy(api, inst.service_id, deploy["id"])[-1] == "live"
    assert _health(inst.url).json()["environment"] == "bulk-staging"


@integration
def test_a_new_service_boots_with_the_env_given_at_creation_not_the_env_put_after(
    sandbox: Any, api: httpx.Client
) -> None:
    """The race pulumi-render runs into: it creates the WebService, then PUTs its env vars;
    Render has already started the first deploy with the env given at creation."""
    shared = _env_of(api, sandbox.descriptor.instance(1).service_id)
    created_env = {
        "DATABASE_URL": shared["DATABASE_URL"],
        "REDIS_URL": shared["REDIS_URL"],
        "NODE_ENV": "at-creation",
        "KOINONIA_INSTANCE": "api-3",
    }
    created = api.post(
        "/services",
        json={
            "type": "web_service",
            "name": "koinonia-sms-backend-3",
            "ownerId": "tea-sandbox0000000000000",
            "envVars": [{"key": k, "value": v} for k, v in created_env.items()],
            "serviceDetails": {"runtime": "node", "healthCheckPath": "/health"},
        },
    )
    assert created.status_code == 201, created.text
    service, deploy_id = created.json()["service"], created.json()["deployId"]
    late = [{"key": k, "value": v} for k, v in (created_env | {"NODE_ENV": "put-later"}).items()]
    assert api.put(f"/services/{service['id']}/env-vars", json=late).status_code == 200

    seen = _wait_deploy(api, service["id"], deploy_id)
    assert seen[-1] == "live", seen
    url = service["serviceDetails"]["url"]
    health = _health(url).json()
    assert (health["environment"], health["instance"]) == ("at-creation", "api-3")
    first = api.get(f"/services/{service['id']}/deploys/{deploy_id}").json()
    assert first["trigger"] == "new_commit"

    # The env PUT after creation reaches the process with the next deploy, not before.
    deploy = api.post(f"/services/{service['id']}/deploys", json={}).json()
    assert _wait_deploy(api, service["id"], deploy["id"])[-1] == "live"
    assert _health(url).json()["environment"] == "put-later"


# ---- the render timing profile: Render's sequence, scaled ------------------------------------


@pytest.fixture
def render_api(render_timed_sandbox: Any) -> Iterator[httpx.Client]:
    sbx = render_timed_sandbox
    with httpx.Client(base_url=sbx.api_url, headers=sbx.auth_headers, timeout=10) as client:
        yield client


def _wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@integration
def test_render_timing_suspend_acts_later_and_resume_is_a_deploy(
    render_timed_sandbox: Any, render_api: httpx.Client, traffic_through_edge: Any
) -> None:
    from koinonia_infra.sandbox.timing import RENDER

    sbx = render_timed_sandbox
    inst = sbx.descriptor.instance(1)
    path = f"/services/{inst.service_id}"
    before = _record(sbx.state_dir, "api-1")
    assert before is not None
    with traffic_through_edge(sbx.edge_url) as traffic:
        assert render_api.post(path + "/suspend").status_code == 202
        # Right after the 202 nothing has happened yet: Render suspends asynchronously.
        assert render_api.get(path).json()["suspended"] == "not_suspended"
        assert is_alive(before)
        assert _health(inst.url).status_code == 200
        _wait_until(
            lambda: render_api.get(path).json()["suspended"] == "suspended",
            RENDER.suspend_deadline_seconds,
            "suspend never took effect",
        )
        _wait_until(lambda: not is_alive(before), 15, "suspended process still running")

        assert render_api.post(path + "/resume").status_code == 202
        deploy = render_api.get(path + "/deploys", params={"limit": 1}).json()[0]["deploy"]
        assert deploy["trigger"] == "service_resumed"
        # The instance is not back at once: the resume deploy builds first.
        with pytest.raises(httpx.TransportError):
            _health(inst.url)
        # A resume is a deploy on Render: its deadline is a deploy's.
        seen = _wait_deploy(
            render_api, inst.service_id, deploy["id"], RENDER.deploy_deadline_seconds
        )
    assert seen[-1] == "live", seen
    assert "build_in_progress" in seen
    assert _health(inst.url).status_code == 200
    assert traffic.failed == [], f"edge failed {len(traffic.failed)} of {traffic.total}"


@integration
def test_render_timing_keeps_the_old_process_after_the_switch(
    render_timed_sandbox: Any, render_api: httpx.Client
) -> None:
    from koinonia_infra.sandbox.timing import RENDER

    sbx = render_timed_sandbox
    inst = sbx.descriptor.instance(2)
    old = _record(sbx.state_dir, "api-2")
    assert old is not None
    deploy = render_api.post(f"/services/{inst.service_id}/deploys", json={}).json()
    seen = _wait_deploy(render_api, inst.service_id, deploy["id"], RENDER.deploy_deadline_seconds)
    assert seen[-1] == "live", seen
    new = _record(sbx.state_dir, "api-2")
    assert new is not None
    assert new.pid != old.pid
    # Live, and the old instance is still there: Render SIGTERMs it 60 s (here scaled) later.
    assert is_alive(old)
    _wait_until(
        lambda: not is_alive(old),
        RENDER.overlap_seconds + RENDER.shutdown_delay_seconds + 10,
        "old process never stopped after the overlap",
    )
    assert is_alive(new)
    assert _health(inst.url).status_code == 200
