"""`koinonia-infra adopt` end to end over Render-shaped answers (the real client on an in-memory
transport): what it writes, what it says, and that every error leaves the stack file alone."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from koinonia_infra.cli import adopt as adopt_cli
from koinonia_infra.cli import app
from koinonia_infra.render_api import RenderClient
from koinonia_infra.sandbox.control_plane import Service
from koinonia_infra.sandbox.datastores_api import SandboxKeyValue, SandboxPostgres

REPO = Path(__file__).resolve().parents[2]
FAKE_SECRET_VALUE = "sk_test_FAKE_never_shown_0123456789"
runner = CliRunner()


def _service(name: str = "koinonia-sms-backend", kind: str = "web_service") -> dict[str, Any]:
    data = Service(
        id="srv-live000000000000000" + str(len(name) % 10),
        name=name,
        kind="instance",
        url=f"https://{name}.onrender.com",
        port=8080,
        number=1,
        build_command="npm ci",
        start_command="npm start",
        plan="standard",
    ).to_json()
    data["type"] = kind
    return data


class Render:
    """The answers of Render's API for one production: a web service, a Postgres, a Key Value."""

    def __init__(self) -> None:
        self.services = [_service()]
        self.postgres = [
            SandboxPostgres(
                id="dpg-live000000000000000a-a",
                name="koinonia-db",
                version="16",
                database_name="koinonia_prod",
                database_user="koinonia",
                disk_size_gb=20,
            ).to_json()
        ]
        self.key_values = [
            SandboxKeyValue(
                id="red-live000000000000000a", name="koinonia-cache", version="7.2.4"
            ).to_json()
        ]
        self.env = {
            "DATABASE_URL": "postgresql://koinonia:FAKE@dpg/koinonia",
            "LOG_LEVEL": "info",
            "STRIPE_SECRET_KEY": FAKE_SECRET_VALUE,
            "LEGACY_FLAG": "1",
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        name = request.url.params.get("name")

        def listed(key: str, items: list[dict[str, Any]]) -> httpx.Response:
            chosen = [i for i in items if name is None or i["name"] == name]
            return httpx.Response(200, json=[{"cursor": i["id"], key: i} for i in chosen])

        def one(items: list[dict[str, Any]], ident: str) -> httpx.Response:
            for item in items:
                if item["id"] == ident:
                    return httpx.Response(200, json=item)
            return httpx.Response(404, json={"id": "not_found", "message": "not found"})

        parts = path.strip("/").split("/")
        if parts == ["services"]:
            return listed("service", self.services)
        if parts == ["postgres"]:
            return listed("postgres", self.postgres)
        if parts == ["key-value"]:
            return listed("keyValue", self.key_values)
        if len(parts) == 3 and parts[0] == "services" and parts[2] == "env-vars":
            items = [{"cursor": k, "envVar": {"key": k, "value": v}} for k, v in self.env.items()]
            return httpx.Response(200, json=items)
        if len(parts) == 2:
            table = {"services": self.services, "postgres": self.postgres}
            return one(table.get(parts[0], self.key_values), parts[1])
        return httpx.Response(404, json={"id": "not_found", "message": "no route"})


@pytest.fixture
def render(monkeypatch: pytest.MonkeyPatch) -> Render:
    fake = Render()

    @contextlib.contextmanager
    def client(*_: Any) -> Iterator[RenderClient]:
        with RenderClient(
            "https://api.render.test/v1", "rnd_FAKE", transport=httpx.MockTransport(fake.handle)
        ) as real:
            yield real

    monkeypatch.setattr(adopt_cli, "_client", client)
    return fake


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(REPO / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    monkeypatch.setenv("KOINONIA_PROJECT_DIR", str(tmp_path))
    return tmp_path / "Pulumi.prod.yaml"


def test_adopt_writes_what_runs_and_keeps_the_file_as_it_was(render: Render, project: Path) -> None:
    before = project.read_text()
    result = runner.invoke(app, ["adopt", "--yes"])
    assert result.exit_code == 0, result.output
    after = project.read_text()
    # Comments, order and untouched sections survive the round trip.
    assert "# An explicit set, never a count: removing 1 must not rename or touch 2." in after
    assert "plan: standard                    # paid: free services" in after
    edge_before = before[before.index("  koinonia:edge:") :]
    assert after.endswith(edge_before)
    assert "importIds:\n      1: srv-live" in after
    assert "importId: dpg-live000000000000000a-a" in after
    assert "importId: red-live000000000000000a" in after
    assert "databaseName: koinonia_prod" in after
    assert "diskSizeGb: 20" in after
    assert "koinonia:ownerId: tea-sandbox0000000000000" in after
    out = result.output
    assert "import postgres (dpg-live000000000000000a-a): no change" in out
    assert "import key-value (red-live000000000000000a): no change" in out
    assert "import api-1 (srv-live" in out
    assert "create api-2" in out
    assert "create edge" in out
    # Now the file matches: --check passes.
    check = runner.invoke(app, ["adopt", "--check"])
    assert check.exit_code == 0, check.output
    assert "matches the live resources" in check.output


def test_env_keys_are_listed_values_never(render: Render, project: Path) -> None:
    result = runner.invoke(app, ["adopt", "--yes"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert FAKE_SECRET_VALUE not in out
    assert "FAKE@dpg" not in out
    assert FAKE_SECRET_VALUE not in project.read_text()
    assert "secret-looking: STRIPE_SECRET_KEY" in out
    # Declared nowhere: the first `up` would drop them, so they are called out.
    assert "DROPS them from instance 1" in out
    assert "LEGACY_FLAG, STRIPE_SECRET_KEY" in out
    assert "pulumi config set --secret koinonia:JWT_SECRET --stack prod" in out
    assert "pulumi config set --secret koinonia:STRIPE_SECRET_KEY --stack prod" in out


def test_check_names_each_difference(render: Render, project: Path) -> None:
    assert runner.invoke(app, ["adopt", "--yes"]).exit_code == 0
    text = (
        project.read_text()
        .replace("plan: standard ", "plan: pro ")
        .replace("databaseName: koinonia_prod", "databaseName: koinonia")
    )
    project.write_text(text)
    result = runner.invoke(app, ["adopt", "--check"])
    assert result.exit_code == 1
    out = result.output
    assert "Pulumi.prod.yaml does not match the live resources" in out
    assert "koinonia:api.plan: stack file pro, live standard" in out
    assert "koinonia:postgres.databaseName: stack file koinonia, live koinonia_prod" in out
    assert project.read_text() == text


def test_check_fails_on_a_file_never_adopted(render: Render, project: Path) -> None:
    result = runner.invoke(app, ["adopt", "--check"])
    assert result.exit_code == 1
    assert "koinonia:api.importIds: stack file (unset), live 1: srv-live" in result.output


def _two_services(render: Render) -> None:
    render.services.append({**_service(), "id": "srv-other00000000000000"})


def _private(render: Render) -> None:
    render.services = [_service(kind="private_service")]


def _static(render: Render) -> None:
    render.services = [_service(kind="static_site")]


def _renamed(render: Render) -> None:
    render.services = [_service(name="koinonia-sms-backend-old")]


def _no_postgres(render: Render) -> None:
    render.postgres = []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_renamed, "error: no Render service named 'koinonia-sms-backend' is visible"),
        (_two_services, "error: 2 Render services are named 'koinonia-sms-backend'"),
        (_private, "is a private service, not a web service"),
        (_static, "is a static site, not a web service"),
        (_no_postgres, "error: no Render Postgres named 'koinonia-db'"),
    ],
)
def test_lookup_errors_are_one_line_exit_2_and_leave_the_file(
    render: Render, project: Path, change: Any, message: str
) -> None:
    change(render)
    before = project.read_bytes()
    result = runner.invoke(app, ["adopt", "--yes"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert project.read_bytes() == before


def test_names_come_from_flags(render: Render, project: Path) -> None:
    _renamed(render)
    result = runner.invoke(app, ["adopt", "--yes", "--service", "koinonia-sms-backend-old"])
    assert result.exit_code == 0, result.output
    assert "name: koinonia-sms-backend-old" in project.read_text()


def test_no_terminal_and_no_yes_refuses(render: Render, project: Path) -> None:
    before = project.read_bytes()
    result = runner.invoke(app, ["adopt"])
    assert result.exit_code == 2
    assert "pass --yes" in result.output
    assert project.read_bytes() == before


def test_missing_key_is_exit_3(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RENDER_API_KEY", "RENDER_APIKEY"):
        monkeypatch.delenv(var, raising=False)
    before = project.read_bytes()
    result = runner.invoke(app, ["adopt", "--yes"])
    assert result.exit_code == 3
    assert result.output.strip() == (
        "error: no Render API key: set RENDER_API_KEY (or RENDER_APIKEY) in the environment"
    )
    assert project.read_bytes() == before


def test_unreachable_api_is_exit_3(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_API_KEY", "rnd_FAKE_unreachable")
    before = project.read_bytes()
    result = runner.invoke(app, ["adopt", "--yes", "--render-api-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 3, result.output
    assert "Render API at 127.0.0.1 unreachable" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "rnd_FAKE_unreachable" not in result.output
    assert project.read_bytes() == before


def test_json_of_the_spec_shapes_round_trips(render: Render) -> None:
    # The fake answers are the control plane's: owner{} and options{}, never ownerId.
    assert "ownerId" not in render.postgres[0]
    assert json.loads(json.dumps(render.key_values[0]))["options"] == {
        "maxmemoryPolicy": "allkeys_lru"
    }


def test_a_new_stack_file_without_owner_is_completed(render: Render, project: Path) -> None:
    text = project.read_text()
    start = text.index("  koinonia:ownerId:")
    project.write_text(text[:start] + text[text.index("\n", start) + 1 :])
    assert "ownerId" not in project.read_text().split("config:")[1]
    result = runner.invoke(app, ["adopt", "--yes"])
    assert result.exit_code == 0, result.output
    assert "koinonia:ownerId: tea-sandbox0000000000000" in project.read_text()


def test_live_values_fix_a_setting_other_errors_leave_the_file(
    render: Render, project: Path
) -> None:
    project.write_text(project.read_text().replace("plan: standard ", "plan: gigantic "))
    before = project.read_bytes()
    result = runner.invoke(app, ["adopt", "--yes", "--service", "koinonia-sms-backend"])
    # The live plan replaces the bad one, so this one is fixed; a bad key elsewhere is not.
    assert result.exit_code == 0, result.output
    project.write_text(before.decode().replace("  koinonia:edge:", "  koinonia:edgee:"))
    broken = project.read_bytes()
    result = runner.invoke(app, ["adopt", "--yes"])
    assert result.exit_code == 2
    assert "koinonia:edgee: unknown key; did you mean 'edge'?" in result.output
    assert project.read_bytes() == broken
