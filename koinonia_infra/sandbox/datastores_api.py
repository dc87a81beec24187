"""The control plane's datastore routes: the sandbox's real PostgreSQL and Redis, described the
way Render's API describes a Postgres and a Key Value, so `adopt` can take the sandbox over as it
takes production over.

    GET /v1/postgres?name=&limit=&cursor=       [{"cursor", "postgres"}]
    GET /v1/postgres/{postgresId}               postgresDetail
    GET /v1/key-value?name=&limit=&cursor=      [{"cursor", "keyValue"}]
    GET /v1/key-value/{keyValueId}              keyValueDetail

Shapes from Render's spec as vendored by cloudy-sky-software/pulumi-render
(provider/cmd/pulumi-gen-render/openapi.yml: postgresWithCursor, postgres, postgresDetail,
keyValueWithCursor, keyValue, keyValueDetail, owner, keyValueOptions); the answers are validated
against tests/contract/schemas/{postgres,key-value}-{list,detail}.json. What matters to an
import is what differs from the create inputs: the workspace comes back as the object
`owner{id, name, email, type}` (never `ownerId`), the eviction policy as
`options{maxmemoryPolicy}`, high availability as `highAvailabilityEnabled`.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from koinonia_infra.sandbox.control_plane import OWNER_ID, _error, _page, now_iso, render_id

OWNER = {"id": OWNER_ID, "name": "koinonia", "email": "ops@koinonia.invalid", "type": "team"}


def postgres_id() -> str:
    # Render's Postgres ids carry a one-letter suffix, e.g. dpg-xxxxxxxxxxxxxxxxxxxx-a.
    return render_id("dpg") + "-a"


@dataclass
class SandboxPostgres:
    id: str
    name: str
    version: str
    database_name: str
    database_user: str
    plan: str = "basic_1gb"
    region: str = "oregon"
    disk_size_gb: int = 15
    high_availability: bool = False
    created_at: str = field(default_factory=now_iso)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": dict(OWNER),
            "plan": self.plan,
            "region": self.region,
            "version": self.version,
            "databaseName": self.database_name,
            "databaseUser": self.database_user,
            "diskSizeGB": self.disk_size_gb,
            "highAvailabilityEnabled": self.high_availability,
            "ipAllowList": [],
            "readReplicas": [],
            "role": "primary",
            "status": "available",
            "suspended": "not_suspended",
            "suspenders": [],
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
            "dashboardUrl": f"https://dashboard.render.com/d/{self.id}",
        }


@dataclass
class SandboxKeyValue:
    id: str
    name: str
    version: str
    plan: str = "starter"
    region: str = "oregon"
    maxmemory_policy: str = "allkeys_lru"
    created_at: str = field(default_factory=now_iso)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": dict(OWNER),
            "plan": self.plan,
            "region": self.region,
            "version": self.version,
            "options": {"maxmemoryPolicy": self.maxmemory_policy},
            "ipAllowList": [],
            "status": "available",
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
            "dashboardUrl": f"https://dashboard.render.com/r/{self.id}",
        }


@dataclass
class Datastores:
    postgres: list[SandboxPostgres] = field(default_factory=list)
    key_values: list[SandboxKeyValue] = field(default_factory=list)


def _named(request: web.Request, items: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    names = request.query.getall("name", [])
    return [(i.id.split("-")[1], i.to_json()) for i in items if not names or i.name in names]


def register_datastores(app: web.Application, stores: Datastores | None) -> None:
    """Adds the datastore routes to the control plane; none when the backend has no datastores."""
    if stores is None:
        return

    async def list_postgres(request: web.Request) -> web.Response:
        return _page(request, "postgres", _named(request, stores.postgres))

    async def get_postgres(request: web.Request) -> web.Response:
        ident = request.match_info["postgres_id"]
        for pg in stores.postgres:
            if pg.id == ident:
                return web.json_response(pg.to_json())
        raise _error(404, "not_found", f"postgres {ident} not found")

    async def list_key_values(request: web.Request) -> web.Response:
        return _page(request, "keyValue", _named(request, stores.key_values))

    async def get_key_value(request: web.Request) -> web.Response:
        ident = request.match_info["key_value_id"]
        for kv in stores.key_values:
            if kv.id == ident:
                return web.json_response(kv.to_json())
        raise _error(404, "not_found", f"key value {ident} not found")

    app.router.add_get("/v1/postgres", list_postgres)
    app.router.add_get("/v1/postgres/{postgres_id}", get_postgres)
    app.router.add_get("/v1/key-value", list_key_values)
    app.router.add_get("/v1/key-value/{key_value_id}", get_key_value)


def new_datastores(
    *, postgres_name: str, postgres_version: str, database_name: str, database_user: str,
    key_value_name: str, key_value_version: str,
) -> Datastores:  # fmt: skip
    return Datastores(
        postgres=[
            SandboxPostgres(
                id=postgres_id(),
                name=postgres_name,
                version=postgres_version,
                database_name=database_name,
                database_user=database_user,
            )
        ],
        key_values=[
            SandboxKeyValue(id=render_id("red"), name=key_value_name, version=key_value_version)
        ],
    )


def sandbox_datastores(pg_data: Path | None, redis_server: Path) -> Datastores:
    """The sandbox's own datastores, with the versions of the servers actually running."""
    from koinonia_infra.sandbox.postgres import DB_NAME, DB_USER
    from koinonia_infra.settings import KeyValueSettings, PostgresSettings

    pg_version = "16"
    if pg_data is not None and (pg_data / "PG_VERSION").exists():
        pg_version = (pg_data / "PG_VERSION").read_text(encoding="utf-8").strip()
    kv_version = "7"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [str(redis_server), "--version"], check=False, capture_output=True, text=True, timeout=5
        ).stdout
        match = re.search(r"v=(\d+(?:\.\d+)*)", out)
        kv_version = match.group(1) if match else kv_version
    return new_datastores(
        postgres_name=PostgresSettings().name,
        postgres_version=pg_version,
        database_name=DB_NAME,
        database_user=DB_USER,
        key_value_name=KeyValueSettings().name,
        key_value_version=kv_version,
    )
