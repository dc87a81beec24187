"""render_caddyfile and edge_start_command: the text, and the real Caddy binary running it."""

from __future__ import annotations

import errno
import json
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
from pydantic import ValidationError

from koinonia_infra.caddy import (
    CADDYFILE_ENV,
    EDGE_SELF_HEALTH_PATH,
    UPSTREAM_HEADER,
    edge_start_command,
    render_caddyfile,
)
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
        "max_fails 1",
        "method GET HEAD OPTIONS",
        "trusted_proxies private_ranges",
        "dial_timeout 1s",
        "response_header_timeout 3s",
        "read_header 10s",
        "read_body 60s",
        "idle 300s",
        f"header_down {UPSTREAM_HEADER} {{http.reverse_proxy.upstream.hostport}}",
        "admin off",
        "auto_https off",
    ):
        assert line in [ln.strip() for ln in text.splitlines()], line
    assert "http://:10000 {" in text
    # An application's 5xx is its own answer, never a failure of the instance.
    assert "unhealthy_status" not in text
    assert "unhealthy_latency" not in text


def test_settings_flow_into_the_text() -> None:
    edge = EdgeSettings(
        retry_window_seconds=1.5,
        health_check_interval_seconds=3,
        fail_duration_seconds=30,
        upstream_response_timeout_seconds=1.25,
        dial_timeout_seconds=0.5,
        client_header_timeout_seconds=4,
        client_body_timeout_seconds=7.5,
        client_idle_timeout_seconds=90,
    )
    text = render_caddyfile(["a:1"], edge, health_path="/healthz", listen=":8000", bind="127.0.0.1")
    assert "lb_try_duration 1500ms" in text
    assert "response_header_timeout 1250ms" in text
    assert "dial_timeout 500ms" in text
    assert "read_header 4s" in text
    assert "read_body 7500ms" in text
    assert "idle 90s" in text
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
    edge = EdgeSettings(
        health_check_interval_seconds=0.5,
        retry_window_seconds=3,
        upstream_response_timeout_seconds=1,
    )
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


def test_a_response_timeout_as_long_as_the_retry_window_is_refused() -> None:
    # Caddy stops retrying once lb_try_duration has elapsed: a GET to a hung instance that times
    # out at the end of the window would reach the client as an error instead of a retry.
    with pytest.raises(ValidationError, match="must be shorter than retryWindowSeconds"):
        EdgeSettings(retry_window_seconds=3, upstream_response_timeout_seconds=3)
    EdgeSettings(retry_window_seconds=0, upstream_response_timeout_seconds=30)  # no retries


@pytest.mark.parametrize("trusted", [["10.0.0.0/8 {"], ["*"], ["private_ranges\n}"]])
def test_trusted_proxies_that_would_break_the_text_are_refused(trusted: list[str]) -> None:
    with pytest.raises(ValueError, match="not an IP range"):
        render_caddyfile(["a:1"], EDGE, trusted_proxies=trusted)


class _Forwarded(BaseHTTPRequestHandler):
    """Answers with the X-Forwarded-* headers it received, every line of each."""

    def do_GET(self) -> None:
        names = ("X-Forwarded-For", "X-Forwarded-Proto")
        body = json.dumps({n: self.headers.get_all(n) or [] for n in names}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _wait_for_edge(client: httpx.Client, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, f"caddy exited with {proc.returncode}"
        try:
            if client.get(EDGE_SELF_HEALTH_PATH).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "caddy did not start"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "proto"),
    [
        # The peer is a trusted proxy (Render's proxy connects from a private address; here the
        # test client on loopback stands for it): what it sent reaches the instance, with the
        # peer appended to X-Forwarded-For as every proxy in a chain does.
        (("private_ranges",), ["203.0.113.7, 127.0.0.1"], ["https"]),
        # A peer outside the trusted ranges cannot forge them: Caddy writes its own.
        (("10.0.0.0/8",), ["127.0.0.1"], ["http"]),
    ],
)
def test_real_caddy_keeps_forwarded_headers_only_from_trusted_proxies(
    tmp_path: Path, trusted: tuple[str, ...], forwarded_for: list[str], proto: list[str]
) -> None:
    caddy = caddy_binary()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Forwarded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    config = tmp_path / "Caddyfile"
    upstream = f"127.0.0.1:{server.server_address[1]}"
    text = render_caddyfile(
        [upstream], EDGE, listen=f":{port}", bind="127.0.0.1", trusted_proxies=trusted
    )
    config.write_text(text)
    proc = subprocess.Popen(
        [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            _wait_for_edge(client, proc)
            got = client.get(
                "/", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
            ).json()
        assert got == {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": proto}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.shutdown()
        server.server_close()


# --- the start command ------------------------------------------------------------------------


def test_start_command_stops_on_an_empty_caddyfile_before_starting_anything(
    tmp_path: Path,
) -> None:
    command = edge_start_command(caddy="/bin/true", workdir=str(tmp_path))
    env = {"PATH": os.environ["PATH"], CADDYFILE_ENV: ""}
    done = subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode != 0
    assert CADDYFILE_ENV in done.stderr
    assert "the edge has no Caddyfile" in done.stderr
    assert not (tmp_path / "caddy").exists()


def test_start_command_quotes_its_paths() -> None:
    command = edge_start_command(caddy="/opt/my caddy/caddy", workdir="/var/tmp/a b")
    assert "cp '/opt/my caddy/caddy' '/var/tmp/a b/caddy' && " in command
    assert "exec '/var/tmp/a b/caddy' run --config '/var/tmp/a b/Caddyfile' " in command


def _capability(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, "security.capability")
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise


def test_start_command_never_execs_a_binary_carrying_a_file_capability(tmp_path: Path) -> None:
    """What Render does to the official image from 2.6.3 on, reproduced: a process whose
    capability bounding set is empty cannot exec a file marked `cap_net_bind_service=+ep`
    (execve fails with EPERM). The start command must still bring the edge up."""
    caddy = caddy_binary()
    setcap, setpriv = shutil.which("setcap"), shutil.which("setpriv")
    if os.geteuid() != 0 or setcap is None or setpriv is None:
        pytest.skip("needs root, setcap (libcap2-bin) and setpriv (util-linux)")
    image = tmp_path / "image"
    image.mkdir()
    marked = image / "caddy"
    shutil.copy(caddy, marked)
    subprocess.run([setcap, "cap_net_bind_service=+ep", str(marked)], check=True, timeout=10)
    assert _capability(marked) is not None
    no_caps = [setpriv, "--bounding-set=-all", "--"]
    direct = subprocess.run(
        [*no_caps, str(marked), "version"], capture_output=True, text=True, timeout=10, check=False
    )
    assert direct.returncode != 0
    assert "Operation not permitted" in direct.stderr  # Render's "operation not permitted"

    work = tmp_path / "work"
    work.mkdir()
    port = free_port()
    text = render_caddyfile(["127.0.0.1:9"], EDGE, listen=f":{port}", bind="127.0.0.1")
    env = {"PATH": os.environ["PATH"], "HOME": str(work), CADDYFILE_ENV: text}
    command = edge_start_command(caddy=str(marked), workdir=str(work))
    proc = subprocess.Popen(
        [*no_caps, "/bin/sh", "-c", command],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            _wait_for_edge(client, proc)
        running = Path(os.readlink(f"/proc/{proc.pid}/exe"))
        assert running == work / "caddy"
        assert _capability(running) is None
        assert (work / "Caddyfile").read_text() == text + "\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
