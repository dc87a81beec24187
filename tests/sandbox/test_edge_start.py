"""The sandbox's edge runs the very start command the Render edge service gets, with the edge
settings of its stack (test_sandbox_stack.py; KOINONIA_SANDBOX_EDGE overrides them for tests)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from koinonia_infra.caddy import EDGE_SELF_HEALTH_PATH, edge_start_command, render_caddyfile
from koinonia_infra.program.edge import DOCKER_COMMAND
from koinonia_infra.settings import ApiSettings, EdgeSettings


@pytest.mark.integration
def test_the_edge_process_is_the_copy_the_start_command_made(sandbox: Any) -> None:
    caddy_dir = sandbox.state_dir / "caddy"
    pid = sandbox.pid("edge")
    # `/bin/sh -c <text>` exec'd the copy: same PID, now the copied binary, with the arguments
    # of the production command and the Caddyfile written from KOINONIA_CADDYFILE.
    edge = psutil.Process(pid)
    assert Path(edge.exe()) == caddy_dir / "caddy"
    config = caddy_dir / "Caddyfile"
    assert edge.cmdline() == [
        str(caddy_dir / "caddy"), "run", "--config", str(config), "--adapter", "caddyfile"
    ]  # fmt: skip
    edge_port = int(sandbox.edge_url.rsplit(":", 1)[1])
    upstreams = [i.url.removeprefix("http://") for i in sandbox.descriptor.instances]
    expected = render_caddyfile(
        upstreams,
        EdgeSettings(),
        health_path=ApiSettings().health_check_path,
        listen=f":{edge_port}",
        bind="127.0.0.1",
    )
    assert config.read_text() == expected + "\n"
    assert httpx.get(sandbox.edge_url + EDGE_SELF_HEALTH_PATH, timeout=5).status_code == 200


@pytest.mark.integration
def test_production_and_sandbox_differ_only_in_paths(sandbox: Any) -> None:
    caddy_dir = sandbox.state_dir / "caddy"
    production = shlex.split(DOCKER_COMMAND)[2]
    local = edge_start_command(caddy="/usr/bin/caddy", workdir=str(caddy_dir))
    assert local.replace(str(caddy_dir), "/tmp") == production
