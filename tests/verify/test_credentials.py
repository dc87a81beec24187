"""The Render key goes only where the user sent it: `verify`, `status` and `drill failover` read
`renderApiUrl` from a descriptor anyone can hand over (a pull request, an artifact, a chat
message), so that URL must never receive `RENDER_API_KEY`. Real HTTP servers record every
Authorization header they are sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from verify_servers import FakeDeployment

from koinonia_infra.cli import app

ENV_KEY = "rnd_FAKE_env_key_for_tests_0000"
OWN_TOKEN = "sandbox-FAKE-token-0000"
runner = CliRunner()


@dataclass
class Recorder:
    """An HTTP server that answers every request 401 (like Render for a key it rejects) and
    records what it was sent."""

    server: ThreadingHTTPServer
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def authorizations(self) -> list[str | None]:
        return [auth for _, auth in self.seen]


def _recorder() -> Recorder:
    recorder: Recorder

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            recorder.seen.append((self.path, self.headers.get("Authorization")))
            body = b'{"id": "unauthorized", "message": "unauthorized"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: Any) -> None:
            pass

    recorder = Recorder(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=recorder.server.serve_forever, daemon=True).start()
    return recorder


@pytest.fixture
def planted() -> Iterator[Recorder]:
    """The server a hostile descriptor names as its `renderApiUrl`."""
    rec = _recorder()
    yield rec
    rec.server.shutdown()


@pytest.fixture
def chosen() -> Iterator[Recorder]:
    """The API endpoint the user chose explicitly (flag or environment)."""
    rec = _recorder()
    yield rec
    rec.server.shutdown()


@pytest.fixture(autouse=True)
def _env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RENDER_APIKEY", raising=False)
    monkeypatch.delenv("RENDER_API_URL", raising=False)
    monkeypatch.setenv("RENDER_API_KEY", ENV_KEY)


def hostile_outputs(tmp_path: Path, dep: FakeDeployment, planted: Recorder, **extra: Any) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(dep.descriptor(renderApiUrl=planted.url, **extra)))
    return path


COMMANDS = {
    "verify": ["verify", "-n", "20"],
    "status": ["status"],
    "drill": ["drill", "failover", "--yes", "--duration", "1"],
}


@pytest.mark.parametrize("how", ["render", "env", "flag"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_env_key_never_reaches_a_descriptor_url(
    *,
    command: str,
    how: str,
    tmp_path: Path,
    fake_deployment: FakeDeployment,
    planted: Recorder,
    chosen: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`chosen` stands for Render's API (no endpoint given), for `$RENDER_API_URL`, or for
    `--render-api-url`; the descriptor's `renderApiUrl` is `planted`."""
    extra: list[str] = []
    if how == "render":
        monkeypatch.setattr("koinonia_infra.render_api.DEFAULT_RENDER_API_URL", chosen.url)
    elif how == "env":
        monkeypatch.setenv("RENDER_API_URL", chosen.url)
    else:
        extra = ["--render-api-url", chosen.url]
    outputs = hostile_outputs(tmp_path, fake_deployment, planted)
    result = runner.invoke(app, [*COMMANDS[command], "--outputs", str(outputs), *extra])
    assert planted.seen == [], f"the descriptor's URL was called: {planted.seen}"
    # The key went where the user sent it, and only there.
    assert chosen.authorizations(), result.output
    assert set(chosen.authorizations()) == {f"Bearer {ENV_KEY}"}
    assert ENV_KEY not in result.output


def test_descriptor_url_gets_only_the_descriptors_own_token(
    tmp_path: Path, fake_deployment: FakeDeployment, planted: Recorder, chosen: Recorder
) -> None:
    # A descriptor that brings its own token (as the sandbox's does) is answered at its own URL,
    # with that token: the user's key is not needed there, so it is not sent there.
    outputs = hostile_outputs(tmp_path, fake_deployment, planted, renderApiKey=OWN_TOKEN)
    runner.invoke(app, ["verify", "-n", "20", "--outputs", str(outputs)])
    assert planted.authorizations(), "the descriptor's own API was not asked"
    assert set(planted.authorizations()) == {f"Bearer {OWN_TOKEN}"}
    assert chosen.seen == []
