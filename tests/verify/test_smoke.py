"""verify's smoke checks (`koinonia:verify.smoke`): the stack file's declaration, and the checks
run against the reference instance's real routes (sandbox/api_server.py create_app) served on
local ports, with the datastores' answers stubbed (the sandbox test has the real ones)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from koinonia_infra.descriptor import parse_descriptor
from koinonia_infra.errors import ConfigError
from koinonia_infra.sandbox.api_server import create_app
from koinonia_infra.settings import SmokeCheck, VerifySettings, load_settings
from koinonia_infra.verify.model import VerifyOptions
from koinonia_infra.verify.signoff import render_markdown
from koinonia_infra.verify.smoke import SANDBOX_SMOKE, run_smoke


class Instances:
    """Three reference apps on a loop thread (api-1, api-2 and one standing in for the edge);
    `cache_up[name]` and `db_up[name]` say whether that app's datastores answer."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.db_up = {"api-1": True, "api-2": True, "edge": True}
        self.cache_up = dict(self.db_up)
        self.counters: dict[str, int] = {}
        self.urls = {name: self._start(name) for name in self.db_up}

    def _start(self, name: str) -> str:
        async def ok() -> bool:
            return True

        async def read_db() -> dict[str, Any] | None:
            return (
                {"name": "koinonia", "now": "2026-01-01T00:00:00+00:00"}
                if self.db_up[name]
                else None
            )

        async def touch(key: str) -> int | None:
            if not self.cache_up[name]:
                return None
            self.counters[key] = self.counters.get(key, 0) + 1
            return self.counters[key]

        app = create_app(database=ok, cache=ok, instance=name, service=name,
                         environment="production", read_db=read_db, touch_cache=touch)  # fmt: skip

        async def start() -> int:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

        port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return f"http://127.0.0.1:{port}"

    def descriptor(self) -> Any:
        return parse_descriptor(
            {
                "edgeUrl": self.urls["edge"],
                "instances": [
                    {
                        "number": n,
                        "name": f"svc-{n}",
                        "serviceId": f"srv-{n}",
                        "url": self.urls[f"api-{n}"],
                        "privateAddress": f"svc-{n}:8080",
                    }
                    for n in (1, 2)
                ],
            },
            source="test",
        )


@pytest.fixture(scope="module")
def instances() -> Iterator[Instances]:
    started = Instances()
    yield started
    started.loop.call_soon_threadsafe(started.loop.stop)


@pytest.fixture(autouse=True)
def all_up(instances: Instances) -> None:
    for name in instances.db_up:
        instances.db_up[name] = instances.cache_up[name] = True


def by_key(results: list[Any]) -> dict[tuple[str, str], Any]:
    return {(r.name, r.target): r for r in results}


def test_every_check_runs_on_every_instance_and_through_the_edge(instances: Instances) -> None:
    results = run_smoke(instances.descriptor(), SANDBOX_SMOKE, VerifyOptions())
    assert sorted(by_key(results)) == [
        (f"Smoke: {name}", target)
        for name in ("cache", "database")
        for target in ("api-1", "api-2", "edge")
    ]
    assert all(r.status == "pass" for r in results), [r.reason for r in results]
    db = by_key(results)[("Smoke: database", "api-2")]
    assert db.threshold == "GET /smoke/database → 200, `database.now` in the JSON answer"
    assert db.measured.startswith("HTTP 200 in ")
    assert db.measured.endswith(", `database.now` present")
    # The cache endpoint really wrote: each target's own key went up by one.
    assert instances.counters["koinonia:smoke:api-1"] >= 1


def test_a_cache_down_on_one_instance_fails_that_line_only(instances: Instances) -> None:
    instances.cache_up["api-2"] = False
    results = by_key(run_smoke(instances.descriptor(), SANDBOX_SMOKE, VerifyOptions()))
    failed = {k: r for k, r in results.items() if r.status == "fail"}
    assert list(failed) == [("Smoke: cache", "api-2")]
    assert failed[("Smoke: cache", "api-2")].reason == "HTTP 503, expected 200"


def test_a_missing_json_field_fails(instances: Instances) -> None:
    check = SmokeCheck(name="root", path="/", json_field="data.id")
    results = run_smoke(instances.descriptor(), [check], VerifyOptions())
    assert {r.status for r in results} == {"fail"}
    assert results[0].reason == "no `data.id` in the JSON answer"
    present = SmokeCheck(name="root", path="/", json_field="instance")
    assert {r.status for r in run_smoke(instances.descriptor(), [present], VerifyOptions())} == {
        "pass"
    }


def test_an_unreachable_instance_fails_with_the_reason(instances: Instances) -> None:
    data = instances.descriptor().model_dump(by_alias=True)
    data["instances"][0]["url"] = "http://127.0.0.1:9"  # discard port: nothing listens
    descriptor = parse_descriptor(data, source="test")
    check = SmokeCheck(name="root", path="/")
    results = by_key(run_smoke(descriptor, [check], VerifyOptions(timeout_seconds=3)))
    assert results[("Smoke: root", "api-1")].status == "fail"
    assert "refused" in (results[("Smoke: root", "api-1")].reason or "")
    assert results[("Smoke: root", "edge")].status == "pass"


def test_wait_retries_a_failing_check_until_it_passes(instances: Instances) -> None:
    instances.db_up["edge"] = False
    timer = threading.Timer(0.3, lambda: instances.db_up.__setitem__("edge", True))
    timer.start()
    results = run_smoke(
        instances.descriptor(), SANDBOX_SMOKE[:1], VerifyOptions(), until=time.monotonic() + 10
    )
    timer.join()
    assert all(r.status == "pass" for r in results)


def test_each_smoke_line_is_in_the_sign_off(instances: Instances) -> None:
    from koinonia_infra.verify.model import VerifyReport

    instances.cache_up["edge"] = False
    results = run_smoke(instances.descriptor(), SANDBOX_SMOKE, VerifyOptions())
    report = VerifyReport(
        deployment={"edgeUrl": instances.urls["edge"], "instances": []},
        options=VerifyOptions(),
        checks=results,
        started_at="now",
        duration_seconds=0.1,
    )
    markdown = render_markdown(report)
    assert "## Functional checks (every instance and the edge)" in markdown
    assert (
        "- [ ] Smoke: cache on edge (GET /smoke/cache → 200, \\`cache.value\\` in the JSON "
        "answer) — FAILED: edge: HTTP 503, expected 200"
    ) in markdown
    assert "- [x] Smoke: database on api-1 (" in markdown
    assert "**FAILED**" in markdown


# ---- the stack file ------------------------------------------------------------------------


def write_stack(tmp_path: Path, verify_yaml: str) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(
        "config:\n  koinonia:ownerId: tea-test\n  koinonia:verify:\n" + verify_yaml,
        encoding="utf-8",
    )
    return path


def test_the_stack_file_declares_smoke_checks_and_capacity_ceilings(tmp_path: Path) -> None:
    path = write_stack(
        tmp_path,
        "    capacityMaxConcurrency: 32\n"
        "    capacityMaxSeconds: 60\n"
        "    smoke:\n"
        "      - {name: users, path: /api/users, jsonField: data}\n"
        "      - {name: ping, method: HEAD, path: /ping, expectStatus: 204}\n"
        "      - {name: login, method: POST, path: /api/login, expectStatus: 401,\n"
        "         safeToRepeat: true}\n",
    )
    verify = load_settings(path).verify
    assert [c.name for c in verify.smoke] == ["users", "ping", "login"]
    assert verify.smoke[1].expect_status == 204
    assert verify.capacity_max_concurrency == 32
    assert verify.capacity_max_seconds == 60
    options = VerifyOptions.from_settings(verify)
    assert [c.path for c in options.smoke] == ["/api/users", "/ping", "/api/login"]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "    smoke:\n      - {name: send, method: POST, path: /api/sms}\n",
            "POST runs on every instance and through the edge; only GET and HEAD unless "
            "`safeToRepeat: true`",
        ),
        ("    smoke:\n      - {name: x, path: api}\n", "must start with '/'"),
        (
            "    smoke:\n      - {name: x, path: /a}\n      - {name: x, path: /b}\n",
            "smoke check names must be unique: x",
        ),
        ("    smoke:\n      - {name: x, path: /a, expectStatus: 700}\n", "less than or equal"),
    ],
)
def test_a_bad_smoke_declaration_is_one_line_naming_it(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_stack(tmp_path, yaml_text))
    text = str(caught.value)
    assert "koinonia:verify.smoke" in text
    assert message in text


def test_no_smoke_checks_by_default() -> None:
    assert VerifySettings().smoke == []
    assert VerifyOptions.from_settings(None).smoke == ()


# ---- build logs --------------------------------------------------------------------------------


class BuildLogs:
    """The three reads build_log_check makes, answering Render's shapes (render_api models)."""

    def __init__(self, messages: list[str]) -> None:
        from datetime import UTC, datetime

        from koinonia_infra.render_api import Deploy, LogEntry

        self.deploy = Deploy(
            id="dep-1",
            status="live",
            created_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
            finished_at=datetime(2026, 1, 1, 12, 5, tzinfo=UTC),
        )
        labels = [{"name": "resource", "value": "srv-1"}, {"name": "type", "value": "build"}]
        self.entries = [
            LogEntry.model_validate(
                {"id": f"l{i}", "message": m, "timestamp": "2026-01-01T12:01:00Z", "labels": labels}
            )
            for i, m in enumerate(messages)
        ]
        self.queries: list[dict[str, Any]] = []

    def latest_deploy(self, sid: str) -> Any:
        return self.deploy

    def service_json(self, sid: str) -> dict[str, Any]:
        return {"id": sid, "ownerId": "tea-x"}

    def list_logs(self, owner: str, resources: list[str], **kwargs: Any) -> list[Any]:
        self.queries.append({"owner": owner, "resources": resources, **kwargs})
        return self.entries


def test_build_logs_read_error_lines_of_type_build_over_the_deploys_window(
    instances: Instances,
) -> None:
    from koinonia_infra.verify.smoke import build_log_check

    render = BuildLogs(["npm ERR! code ELIFECYCLE token=ghp_abcdefgh123 refused"])
    result = build_log_check(instances.descriptor(), render)  # type: ignore[arg-type]
    assert result.status == "fail"
    assert result.reason == (
        "1 error line(s): api-1: npm ERR! code ELIFECYCLE token=[secret] refused"
    )
    (query,) = render.queries
    assert query["level"] == ["error"]
    assert query["types"] == ["build"]
    assert query["resources"] == ["srv-1", "srv-2"]
    assert query["start"] == render.deploy.created_at
    assert query["end"] == render.deploy.finished_at
    passed = build_log_check(instances.descriptor(), BuildLogs([]))  # type: ignore[arg-type]
    assert passed.status == "pass"
    assert passed.measured == "no error lines"


def test_build_logs_without_a_key_are_skipped_with_the_reason(instances: Instances) -> None:
    from koinonia_infra.verify.smoke import build_log_check

    result = build_log_check(instances.descriptor(), None, render_skip="no Render API key")
    assert result.status == "skip"
    assert result.reason == "no Render API key"
