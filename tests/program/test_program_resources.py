"""The Pulumi program under mocks: what it registers, with which options, wired how."""

from __future__ import annotations

import re
from typing import Any

from program_helpers import evaluate_settings as run
from program_helpers import make_settings

from koinonia_infra.caddy import EDGE_SELF_HEALTH_PATH
from koinonia_infra.program.edge import CADDYFILE_ENV
from koinonia_infra.program.mocks import MOCK_CONNECTION, Evaluation, Registration, Secret, reveal

WEB = "render:services:WebService"
ENV = "render:services:EnvVarsForService"
PG = "render:postgres:Postgres"
KV = "render:key-value:KeyValue"


def env_of(ev: Evaluation, logical: str) -> dict[str, Any]:
    entries = ev.by_name(logical).inputs["envVars"]
    keys = [e["key"] for e in entries]
    assert len(keys) == len(set(keys)), f"duplicate env keys in {logical}: {keys}"
    return {e["key"]: e["value"] for e in entries}


def upstreams(ev: Evaluation) -> list[str]:
    caddyfile = reveal(env_of(ev, "edge-env")[CADDYFILE_ENV])
    match = re.search(r"reverse_proxy ([^{\n]+)\{", caddyfile)
    assert match, caddyfile
    return match.group(1).split()


def without(inputs: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if k not in keys}


def test_counts_and_types() -> None:
    ev = run()
    kinds = sorted((r.type, r.logical_name) for r in ev.resources)
    assert kinds == sorted(
        [
            (PG, "postgres"),
            (KV, "key-value"),
            (WEB, "api-1"),
            (WEB, "api-2"),
            (WEB, "edge"),
            (ENV, "api-1-env"),
            (ENV, "api-2-env"),
            (ENV, "edge-env"),
        ]
    )
    # One lookup per datastore, shared by every instance (no per-instance invokes).
    assert sorted(ev.invokes) == [
        "render:key-value:getKeyValueConnectionInfo",
        "render:postgres:getPostgresConnectionInfo",
    ]


def test_three_instances_scale_the_same_spec() -> None:
    ev = run(make_settings(api={"instances": [1, 2, 3]}))
    names = {r.logical_name: r.render_name for r in ev.resources if r.type == WEB}
    assert names == {
        "api-1": "koinonia-sms-backend",
        "api-2": "koinonia-sms-backend-2",
        "api-3": "koinonia-sms-backend-3",
        "edge": "koinonia-edge",
    }


def test_instances_identical_except_name_and_label() -> None:
    ev = run()
    one, two = ev.by_name("api-1"), ev.by_name("api-2")
    assert one.inputs["name"] != two.inputs["name"]
    assert without(one.inputs, "name", "envVars") == without(two.inputs, "name", "envVars")
    for logical in ("api-{}-env", "api-{}"):
        env1, env2 = env_of(ev, logical.format(1)), env_of(ev, logical.format(2))
        differing = sorted(k for k in env1.keys() | env2.keys() if env1.get(k) != env2.get(k))
        assert differing == ["KOINONIA_INSTANCE"]
        assert (env1["KOINONIA_INSTANCE"], env2["KOINONIA_INSTANCE"]) == ("1", "2")


def test_service_spec_carries_the_settings() -> None:
    settings = make_settings(
        api={
            "plan": "pro",
            "branch": "release",
            "rootDir": "server",
            "preDeployCommand": "npm run migrate",
            "maxShutdownDelaySeconds": 45,
            "autoDeploy": False,
        },
        region="frankfurt",
    )
    inputs = run(settings).by_name("api-2").inputs
    details = inputs["serviceDetails"]
    assert inputs["ownerId"] == settings.owner_id
    assert inputs["repo"] == settings.api.repo
    assert (inputs["branch"], inputs["rootDir"], inputs["autoDeploy"]) == (
        "release",
        "server",
        "no",
    )
    assert details["plan"] == "pro"
    assert details["region"] == "frankfurt"
    assert details["runtime"] == "node"
    assert details["healthCheckPath"] == "/health"
    assert details["preDeployCommand"] == "npm run migrate"
    assert details["maxShutdownDelaySeconds"] == 45
    assert details["envSpecificDetails"] == {
        "buildCommand": settings.api.build_command,
        "startCommand": settings.api.start_command,
    }


def test_env_wiring_uses_internal_connection_strings() -> None:
    ev = run()
    for logical in ("api-1-env", "api-2-env"):
        env = env_of(ev, logical)
        assert reveal(env["DATABASE_URL"]) == f"{MOCK_CONNECTION}postgres/postgres/internal"
        assert reveal(env["REDIS_URL"]) == f"{MOCK_CONNECTION}key-value/key-value/internal"
        assert env["NODE_ENV"] == "production"
        assert env["PORT"] == "8080"
        assert env["LOG_LEVEL"] == "info"


def test_env_resource_targets_its_own_service() -> None:
    ev = run()
    for k in (1, 2):
        assert ev.by_name(f"api-{k}-env").inputs["serviceId"] == ev.by_name(f"api-{k}").id
    assert ev.by_name("edge-env").inputs["serviceId"] == ev.by_name("edge").id


def test_connection_strings_and_secret_env_are_secret() -> None:
    ev = run(JWT_SECRET="s3cr3t-value")
    env = env_of(ev, "api-1-env")
    for key in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET"):
        assert isinstance(env[key], Secret), key
    assert reveal(env["JWT_SECRET"]) == "s3cr3t-value"
    for key in ("NODE_ENV", "PORT", "KOINONIA_INSTANCE", "LOG_LEVEL"):
        assert not isinstance(env[key], Secret), key


def test_datastores_protected_and_retained_services_not() -> None:
    ev = run()
    guarded = {r.logical_name for r in ev.resources if r.protect and r.retain_on_delete}
    assert guarded == {"postgres", "key-value"}
    assert not any(r.protect for r in ev.resources if r.type in (WEB, ENV))


def test_datastore_spec() -> None:
    ev = run(make_settings(postgres={"plan": "basic_4gb", "version": "15", "diskSizeGb": 20}))
    pg = ev.by_name("postgres").inputs
    assert (pg["name"], pg["plan"], pg["version"], pg["diskSizeGB"]) == (
        "koinonia-db",
        "basic_4gb",
        "15",
        20,
    )
    assert pg["region"] == "oregon"
    kv = ev.by_name("key-value").inputs
    assert (kv["name"], kv["plan"], kv["maxmemoryPolicy"]) == (
        "koinonia-cache",
        "starter",
        "allkeys_lru",
    )


def test_import_ids_adopt_existing_resources() -> None:
    settings = make_settings(
        api={"importIds": {1: "srv-existing0001"}},
        postgres={"importId": "dpg-existing0001-a"},
        keyValue={"importId": "red-existing0001"},
    )
    ev = run(settings)
    imports = {r.logical_name: r.import_id for r in ev.resources if r.import_id}
    assert imports == {
        "api-1": "srv-existing0001",
        "postgres": "dpg-existing0001-a",
        "key-value": "red-existing0001",
    }
    # The adopted ids flow into what depends on them.
    assert ev.by_name("api-1-env").inputs["serviceId"] == "srv-existing0001"
    assert ev.outputs["postgresId"] == "dpg-existing0001-a"


def test_no_import_without_import_ids() -> None:
    assert all(r.import_id is None for r in run().resources)


def test_removing_instance_one_leaves_instance_two_untouched() -> None:
    before = run(make_settings(api={"instances": [1, 2]}))
    after = run(make_settings(api={"instances": [2]}))
    names = {r.logical_name for r in after.resources}
    assert "api-1" not in names
    assert "api-1-env" not in names
    for logical in ("api-2", "api-2-env"):
        a, b = before.by_name(logical), after.by_name(logical)
        assert (a.type, a.inputs, a.import_id) == (b.type, b.inputs, b.import_id)
    assert upstreams(after) == [i["privateAddress"] for i in after.outputs["instances"]]
    assert len(upstreams(after)) == 1


def test_changing_an_env_var_changes_only_env_resources() -> None:
    before = run(make_settings(api={"env": {"LOG_LEVEL": "info"}}))
    after = run(make_settings(api={"env": {"LOG_LEVEL": "debug"}}))
    changed = sorted(
        r.logical_name
        for r in after.resources
        if without(r.inputs, *r.ignore_changes)
        != without(before.by_name(r.logical_name).inputs, *r.ignore_changes)
    )
    assert changed == ["api-1-env", "api-2-env"]
    assert env_of(after, "api-2-env")["LOG_LEVEL"] == "debug"


def test_edge_caddyfile_lists_exactly_the_declared_instances() -> None:
    ev = run(make_settings(api={"instances": [2, 5, 3]}))
    declared = {i["number"]: i["privateAddress"] for i in ev.outputs["instances"]}
    assert sorted(declared) == [2, 3, 5]
    assert sorted(upstreams(ev)) == sorted(declared.values())
    slugs = {r.logical_name: r.render_name for r in ev.resources if r.type == WEB}
    assert sorted(upstreams(ev)) == sorted(f"{slugs[f'api-{k}']}:8080" for k in (2, 3, 5))


def test_port_flows_to_env_and_upstreams() -> None:
    ev = run(make_settings(api={"port": 9000}))
    assert env_of(ev, "api-1-env")["PORT"] == "9000"
    assert all(u.endswith(":9000") for u in upstreams(ev))
    caddyfile = reveal(env_of(ev, "edge-env")[CADDYFILE_ENV])
    assert "health_uri /health" in caddyfile


def test_edge_service_runs_the_pinned_caddy_image() -> None:
    settings = make_settings(edge={"image": "docker.io/library/caddy:2.6.3-alpine"})
    edge: Registration = run(settings).by_name("edge")
    details = edge.inputs["serviceDetails"]
    assert edge.inputs["image"]["imagePath"] == "docker.io/library/caddy:2.6.3-alpine"
    assert details["runtime"] == "image"
    assert details["healthCheckPath"] == EDGE_SELF_HEALTH_PATH
    assert CADDYFILE_ENV in details["envSpecificDetails"]["dockerCommand"]


def test_edge_disabled_declares_no_edge_and_points_at_an_instance() -> None:
    ev = run(make_settings(edge={"enabled": False}, api={"instances": [2, 3]}))
    assert {r.logical_name for r in ev.resources} & {"edge", "edge-env"} == set()
    first = min(ev.outputs["instances"], key=lambda i: i["number"])
    assert ev.outputs["edgeUrl"] == first["url"]
