"""ONE /health rule: the same answer gets the same verdict from every command, against a real
local HTTP server (docs/sandbox.md: 200 {"status": "ok", ...}; 503 {"status": "degraded", ...})."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from koinonia_infra.deploy.destroy import http_health
from koinonia_infra.descriptor import Descriptor, parse_descriptor
from koinonia_infra.measure.fetch import fetch
from koinonia_infra.measure.health import probe_health
from koinonia_infra.ops.status import collect_status
from koinonia_infra.sandbox.lifecycle import _probe as sandbox_status_probe
from koinonia_infra.verify.checks import Observations, evaluate, plan_checks
from koinonia_infra.verify.model import VerifyOptions

HEALTHY = {
    "status": "ok",
    "database": "connected",
    "redis": "connected",
    "environment": "production",
    "instance": "api-1",
}
DEGRADED = {"status": "degraded", "database": "down", "redis": "ok", "environment": "production"}

# path -> (HTTP status, content type, body)
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/ok/health": (200, "application/json", json.dumps(HEALTHY).encode()),
    "/text/health": (200, "text/plain", b"OK"),
    "/html/health": (200, "text/html", b"<html><body>Welcome to nginx!</body></html>"),
    "/nostatus/health": (200, "application/json", b'{"uptime": 12}'),
    "/degraded/health": (503, "application/json", json.dumps(DEGRADED).encode()),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, ctype, body = ANSWERS.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _descriptor(base: str) -> Descriptor:
    """One instance and the edge, both answering at `base` (so each command probes one answer)."""
    return parse_descriptor(
        {
            "edgeUrl": base,
            "edge": {"name": "koinonia-edge", "serviceId": "srv-edge"},
            "instances": [
                {
                    "number": 1,
                    "name": "svc-1",
                    "serviceId": "srv-1",
                    "url": base,
                    "privateAddress": "svc-1:8080",
                },
            ],
        },
        source="test",
    )


def _verdicts(base: str) -> dict[str, bool]:
    """Each command's verdict on the /health at `base`, through the code that command runs."""
    descriptor = _descriptor(base)
    instance = descriptor.instances[0]
    options = VerifyOptions(environment="production")
    check = next(c for c in plan_checks(descriptor, options) if c.id == "instance-health")
    assert check.url is not None
    observed = Observations(health={check.url: fetch(check.url)})
    status_rows = collect_status(descriptor, None, probe_health).services
    return {
        # status, drill, rollout, resume and up take `probe_health` as their probe (cli/).
        "probe_health (status, drill, rollout, resume, up)": probe_health(base + "/health").ok,
        "status": all(row.healthy for row in status_rows),
        "destroy-instance": http_health()(instance).ok,
        "sandbox status": all(p.ok for p in sandbox_status_probe(descriptor)),
        "verify": evaluate(check, observed, descriptor, options).status == "pass",
    }


@pytest.mark.parametrize(
    ("kind", "healthy"),
    [("ok", True), ("text", False), ("html", False), ("nostatus", False), ("degraded", False)],
)
def test_every_command_gives_the_same_verdict(server: str, kind: str, healthy: bool) -> None:
    # Before: a 200 with a non-JSON body was healthy for destroy-instance and sandbox status,
    # unhealthy for drill, rollout and status.
    verdicts = _verdicts(f"{server}/{kind}")
    assert verdicts == dict.fromkeys(verdicts, healthy)


def test_the_reason_names_what_is_wrong(server: str) -> None:
    text = probe_health(f"{server}/text/health")
    assert text.detail.startswith("HTTP 200: body is not JSON")
    degraded = probe_health(f"{server}/degraded/health")
    assert degraded.detail == "HTTP 503 degraded (database down)"
    assert probe_health(f"{server}/ok/health").detail == "ok"
