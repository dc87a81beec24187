"""Stack outputs, settings from `pulumi.Config`, the edge's start command, and the harness."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pulumi
import pytest
from program_helpers import evaluate_settings as run
from program_helpers import make_settings

from koinonia_infra.caddy import render_caddyfile
from koinonia_infra.errors import ConfigError, OperationFailed
from koinonia_infra.program import build, settings_from_pulumi_config
from koinonia_infra.program.edge import CADDYFILE_ENV, CADDYFILE_PATH, DOCKER_COMMAND
from koinonia_infra.program.mocks import config_for, evaluate

OUTPUT_NAMES = {"edgeUrl", "instances", "postgresId", "keyValueId", "region"}
INSTANCE_KEYS = {"number", "name", "serviceId", "url", "privateAddress"}


def test_stack_outputs_have_exactly_the_contract_names() -> None:
    ev = run(make_settings(region="ohio"))
    assert set(ev.outputs) == OUTPUT_NAMES
    assert ev.outputs["region"] == "ohio"
    assert ev.outputs["postgresId"] == ev.by_name("postgres").id
    assert ev.outputs["keyValueId"] == ev.by_name("key-value").id
    edge = ev.by_name("edge")
    assert ev.outputs["edgeUrl"] == f"https://{edge.render_name}.onrender.com"


def test_instances_output_describes_each_declared_instance() -> None:
    ev = run(make_settings(api={"instances": [3, 1]}))
    instances = ev.outputs["instances"]
    assert [i["number"] for i in instances] == [1, 3]
    for item in instances:
        assert set(item) == INSTANCE_KEYS
        service = ev.by_name(f"api-{item['number']}")
        assert item["name"] == service.render_name
        assert item["serviceId"] == service.id
        assert item["url"].startswith("https://")
        assert item["privateAddress"] == f"{service.render_name}:8080"


def test_settings_round_trip_through_pulumi_config() -> None:
    # The program reads its settings back from pulumi.Config: same model, same values.
    settings = make_settings(
        api={"instances": [1, 4], "importIds": {4: "srv-existing0004"}},
        postgres={"version": 15},
    )
    seen = []

    def program() -> None:
        seen.append(settings_from_pulumi_config())
        build(seen[-1])

    evaluate(settings, program=program)
    assert seen == [settings]


def _with_config(config: dict[str, str]) -> None:
    pulumi.runtime.set_all_config(config, secret_keys=[])


def test_invalid_pulumi_config_is_one_line_per_problem() -> None:
    _with_config(
        {
            "koinonia:ownerId": "tea-testowner0001",
            "koinonia:api": json.dumps({"instances": [1, 1], "port": 10000}),
            "koinonia:edge": "not json",
        }
    )
    try:
        with pytest.raises(ConfigError) as err:
            settings_from_pulumi_config()
    finally:
        _with_config({})
    assert err.value.lines == ["pulumi config: koinonia:edge: expected a mapping of settings"]
    _with_config(
        {
            "koinonia:ownerId": "tea-testowner0001",
            "koinonia:api": json.dumps({"instances": [1, 1], "port": 10000}),
        }
    )
    try:
        with pytest.raises(ConfigError) as err:
            settings_from_pulumi_config()
    finally:
        _with_config({})
    assert [line.split(": ")[1] for line in err.value.lines] == [
        "koinonia:api.instances",
        "koinonia:api.port",
    ]


def test_config_for_encodes_structured_values_as_json() -> None:
    settings = make_settings()
    config = config_for(settings, {"JWT_SECRET": "x"})
    assert config["koinonia:ownerId"] == settings.owner_id
    assert json.loads(config["koinonia:api"])["instances"] == [1, 2]
    assert config["koinonia:JWT_SECRET"] == "x"


def test_missing_secret_value_fails_the_real_program() -> None:
    # Outside `plan` (which supplies placeholders) a secretEnv key without a value must stop
    # the program rather than deploy an empty secret.
    settings = make_settings()

    def program() -> None:
        pulumi.runtime.set_all_config(config_for(settings, {}), secret_keys=[])
        build(settings)

    with pytest.raises(pulumi.ConfigMissingError, match="koinonia:JWT_SECRET"):
        evaluate(settings, program=program)


def test_harness_fails_when_an_output_never_resolves() -> None:
    settings = make_settings()

    def program() -> None:
        build(settings)
        value: asyncio.Future[str] = asyncio.get_event_loop().create_future()
        value.set_result("never-known")
        known: asyncio.Future[bool] = asyncio.get_event_loop().create_future()
        known.set_result(False)
        pulumi.export("unknown", pulumi.Output(set(), value, known))

    with pytest.raises(OperationFailed, match="never resolved"):
        evaluate(settings, program=program)


def test_edge_docker_command_writes_the_caddyfile_and_execs_caddy(tmp_path: Path) -> None:
    # Runs the exact command Render will run, with `caddy` replaced by a recorder.
    fake = tmp_path / "bin" / "caddy"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$CADDY_ARGS"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    config_path = tmp_path / "Caddyfile"
    command = DOCKER_COMMAND.replace(CADDYFILE_PATH, str(config_path))
    caddyfile = render_caddyfile(["a-1:8080", "b-2:8080"], make_settings().edge)
    env = {
        "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
        CADDYFILE_ENV: caddyfile,
        "CADDY_ARGS": str(tmp_path / "args"),
    }
    subprocess.run(shlex.split(command), env=env, check=True, timeout=10)
    assert config_path.read_text() == caddyfile + "\n"
    args = (tmp_path / "args").read_text().split()
    assert args == ["run", "--config", str(config_path), "--adapter", "caddyfile"]
