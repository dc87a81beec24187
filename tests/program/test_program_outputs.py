"""Stack outputs, settings from `pulumi.Config`, the edge's start command, and the harness."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pulumi
import pytest
from program_helpers import evaluate_settings as run
from program_helpers import make_settings
from pulumi_render.services import EnvVarsForService

from koinonia_infra.caddy import edge_start_command, render_caddyfile
from koinonia_infra.errors import ConfigError, OperationFailed
from koinonia_infra.program import build, settings_from_pulumi_config
from koinonia_infra.program.edge import CADDYFILE_ENV, DOCKER_COMMAND
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


@pytest.fixture
def engine_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean config context: no bag from the environment, reset after the test."""
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_SECRET_KEYS", raising=False)
    yield
    pulumi.runtime.set_all_config({}, secret_keys=[])


def problems_in(config: dict[str, str], secret_keys: Sequence[str] = ()) -> list[str]:
    pulumi.runtime.set_all_config(config, secret_keys=list(secret_keys))
    with pytest.raises(ConfigError) as err:
        settings_from_pulumi_config()
    return err.value.lines


OWNER = {"koinonia:ownerId": "tea-testowner0001"}


@pytest.mark.usefixtures("engine_config")
def test_invalid_pulumi_config_is_one_line_per_problem() -> None:
    lines = problems_in(
        {
            **OWNER,
            "koinonia:api": json.dumps({"instances": [1, 1], "port": 10000}),
            "koinonia:edge": "not json",
        }
    )
    assert lines[0] == "pulumi config: koinonia:edge: expected a mapping of settings"
    assert [line.split(": ")[1] for line in lines[1:]] == [
        "koinonia:api.instances",
        "koinonia:api.port",
    ]


@pytest.mark.usefixtures("engine_config")
def test_unknown_keys_fail_inside_the_program_as_in_the_cli() -> None:
    lines = problems_in(
        {
            **OWNER,
            "koinonia:regoin": "ohio",
            "koinonia:api": json.dumps({"healthCheckpath": "/h"}),
            "render:apiKey": "other namespaces are not ours",
        },
        secret_keys=["render:apiKey"],
    )
    assert lines == [
        "pulumi config: koinonia:regoin: unknown key; did you mean 'region'?",
        "pulumi config: koinonia:api.healthCheckpath: unknown key; did you mean 'healthCheckPath'?",
    ]


@pytest.mark.usefixtures("engine_config")
def test_secret_env_value_must_be_an_engine_secret() -> None:
    config = {
        **OWNER,
        "koinonia:api": json.dumps({"secretEnv": ["JWT_SECRET"]}),
        "koinonia:JWT_SECRET": "hunter2",
    }
    assert problems_in(config) == [
        "pulumi config: koinonia:JWT_SECRET: secret value stored in plaintext; "
        "run `pulumi config set --secret koinonia:JWT_SECRET`"
    ]
    pulumi.runtime.set_all_config(config, secret_keys=["koinonia:JWT_SECRET"])
    assert settings_from_pulumi_config().api.secret_env == ["JWT_SECRET"]


@pytest.mark.usefixtures("engine_config")
def test_config_bag_of_the_language_host_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    # A local program (`pulumi up`) gets its config as PULUMI_CONFIG, not set_all_config.
    pulumi.runtime.set_all_config({}, secret_keys=[])
    bag = {**OWNER, "koinonia:api": json.dumps({"secretEnv": ["JWT_SECRET"]})}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**bag, "koinonia:JWT_SECRET": "v"}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["koinonia:JWT_SECRET"]))
    assert settings_from_pulumi_config().owner_id == "tea-testowner0001"
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**bag, "koinonia:instances": "[1]"}))
    with pytest.raises(ConfigError) as err:
        settings_from_pulumi_config()
    assert err.value.lines == [
        "pulumi config: koinonia:instances: unknown key; known keys: ownerId, region, api, "
        "postgres, keyValue, edge, verify, ops, monitor"
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


def test_harness_fails_when_a_registered_input_never_resolves() -> None:
    # Without this, two runs whose inputs are both "unknown" would compare equal.
    settings = make_settings()

    def program() -> None:
        build(settings)
        loop = asyncio.get_event_loop()
        value: asyncio.Future[str] = loop.create_future()
        value.set_result("srv-late")
        known: asyncio.Future[bool] = loop.create_future()
        known.set_result(False)
        EnvVarsForService("late-env", service_id=pulumi.Output(set(), value, known))

    with pytest.raises(OperationFailed, match=r"never resolved under mocks: late-env\.serviceId$"):
        evaluate(settings, program=program)


def test_edge_docker_command_writes_the_caddyfile_and_execs_a_copy_of_caddy(
    tmp_path: Path,
) -> None:
    # The service's command is exactly edge_start_command() under /bin/sh -c; run that text with
    # the paths moved to tmp_path and `caddy` replaced by a recorder.
    assert shlex.split(DOCKER_COMMAND) == ["/bin/sh", "-c", edge_start_command()]
    fake = tmp_path / "bin" / "caddy"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@" > "$CADDY_ARGS"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "work"
    work.mkdir()
    command = edge_start_command(caddy=str(fake), workdir=str(work))
    caddyfile = render_caddyfile(["a-1:8080", "b-2:8080"], make_settings().edge)
    env = {
        "PATH": os.environ["PATH"],
        CADDYFILE_ENV: caddyfile,
        "CADDY_ARGS": str(tmp_path / "args"),
    }
    subprocess.run(["/bin/sh", "-c", command], env=env, check=True, timeout=10)
    config_path = work / "Caddyfile"
    assert config_path.read_text() == caddyfile + "\n"
    args = (tmp_path / "args").read_text().split()
    assert args == [
        str(work / "caddy"),
        "run",
        "--config",
        str(config_path),
        "--adapter",
        "caddyfile",
    ]
