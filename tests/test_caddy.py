"""render_caddyfile: the text, and the real Caddy binary accepting and running it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from koinonia_infra.caddy import EDGE_SELF_HEALTH_PATH, UPSTREAM_HEADER, render_caddyfile
from koinonia_infra.settings import EdgeSettings

EDGE = EdgeSettings()


def caddy_binary() -> str:
    path = shutil.which("caddy")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("caddy is not installed (apt-get install caddy); CI must run this test")
        pytest.skip("caddy is not installed (apt-get install caddy / brew install caddy)")
    return path


def test_round_robin_with_active_and_passive_health_checks() -> None:
    text = render_caddyfile(["api-1-ab12:8080", "api-2-cd34:8080"], EDGE, health_path="/health")
    assert "reverse_proxy api-1-ab12:8080 api-2-cd34:8080 {" in text
    for line in (
        "lb_policy round_robin",
        "health_uri /health",
        "health_interval 2s",
        "health_timeout 2s",
        "lb_try_duration 5s",
        "lb_try_interval 100ms",
        "fail_duration 3s",
        "unhealthy_status 5xx",
        f"header_down {UPSTREAM_HEADER} {{http.reverse_proxy.upstream.hostport}}",
        "admin off",
        "auto_https off",
    ):
        assert line in text.splitlines() or f"\t{line}" in text, line
    assert "http://:10000 {" in text
    assert "lb_retries" not in text  # Caddy 2.7+, Debian ships 2.6


def test_settings_flow_into_the_text() -> None:
    edge = EdgeSettings(
        retry_window_seconds=1.5, health_check_interval_seconds=3, fail_duration_seconds=30
    )
    text = render_caddyfile(["a:1"], edge, health_path="/healthz", listen=":8000", bind="127.0.0.1")
    assert "lb_try_duration 1500ms" in text
    assert "health_interval 3s" in text
    assert "fail_duration 30s" in text
    assert "health_uri /healthz" in text
    assert "http://:8000 {" in text
    assert "\tbind 127.0.0.1\n" in text


def test_upstreams_are_exactly_the_given_ones_in_order() -> None:
    text = render_caddyfile(["b:2", "a:1"], EDGE)
    assert "reverse_proxy b:2 a:1 {" in text
    assert render_caddyfile(["b:2", "a:1"], EDGE) == text  # pure


@pytest.mark.parametrize(
    ("upstreams", "message"),
    [([], "at least one upstream"), (["nohost"], "not host:port"), (["a:1", "a:1"], "duplicate"),
     (["a:1 {\n}"], "not host:port")],
)  # fmt: skip
def test_bad_upstreams_are_refused(upstreams: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_caddyfile(upstreams, EDGE)


@pytest.mark.parametrize("path", ["/health {", "/a b", "health", '/"x"'])
def test_health_path_that_would_break_the_text_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="not a plain URL path"):
        render_caddyfile(["a:1"], EDGE, health_path=path)


def test_real_caddy_validates_the_production_text(tmp_path: Path) -> None:
    caddy = caddy_binary()
    config = tmp_path / "Caddyfile"
    config.write_text(render_caddyfile(["koinonia-sms-backend-ab12:8080", "k-2-cd:8080"], EDGE))
    done = subprocess.run(
        [caddy, "validate", "--config", str(config), "--adapter", "caddyfile"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Valid configuration" in done.stdout + done.stderr


# --- the text running in a real Caddy in front of two tiny upstreams -------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstreams() -> Iterator[list[ThreadingHTTPServer]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Upstream) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def test_real_caddy_balances_names_upstreams_and_survives_a_dead_one(
    tmp_path: Path, upstreams: list[ThreadingHTTPServer]
) -> None:
    caddy = caddy_binary()
    addresses = [f"127.0.0.1:{srv.server_address[1]}" for srv in upstreams]
    port = free_port()
    edge = EdgeSettings(health_check_interval_seconds=0.5, retry_window_seconds=3)
    config = tmp_path / "Caddyfile"
    config.write_text(render_caddyfile(addresses, edge, listen=f":{port}", bind="127.0.0.1"))
    proc = subprocess.Popen(
        [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 15
            while True:
                try:
                    if client.get(EDGE_SELF_HEALTH_PATH).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "caddy did not start"
                time.sleep(0.1)
            seen = Counter(client.get("/").headers.get(UPSTREAM_HEADER) for _ in range(40))
            assert seen == {addresses[0]: 20, addresses[1]: 20}

            upstreams[0].shutdown()
            upstreams[0].server_close()
            answers = [client.get("/") for _ in range(40)]
            assert [r.status_code for r in answers] == [200] * 40
            assert {r.headers.get(UPSTREAM_HEADER) for r in answers} == {addresses[1]}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
