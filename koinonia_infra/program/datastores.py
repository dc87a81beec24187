"""The shared Postgres and Key Value. Both are stateful: protected, retained on delete, and
adopted with `import_` when production already has them (creating a second database is the most
dangerous thing this program could do)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_render as render

from koinonia_infra.settings import Settings

POSTGRES = "postgres"
KEY_VALUE = "key-value"


@dataclass(frozen=True)
class Datastores:
    postgres: render.postgres.Postgres
    key_value: render.key_value.KeyValue
    # Internal (private-network) connection strings, secret.
    database_url: pulumi.Output[str]
    redis_url: pulumi.Output[str]


# What an IMPORT reads back differently from what the program declares, so that adopting a live
# datastore is a no-op. The provider imports by turning `GET /postgres/{id}` (`GET
# /key-value/{id}`) into the old inputs: every value is kept except `id` and the non-object
# values the create schema does not name (cloudy-sky-software/pulumi-provider-framework
# rest/provider.go `Read`, openapi/properties.go `FilterReadOnlyProperties`; object values are
# always kept). Its Diff then REPLACES on any added, removed or changed top-level key that the
# PATCH schema lacks (rest/request.go `determineDiffsAndReplacements`). From Render's spec as
# vendored by cloudy-sky-software/pulumi-render
# (provider/cmd/pulumi-resource-render/openapi_generated.yml: postgresDetail, keyValueDetail,
# postgresPOSTInput, keyValuePOSTInput), the keys of the read-back inputs and of the declared
# inputs differ by exactly these (tests/adopt/test_ignore_lists.py derives them from the spec):
#   - declared, never read back: `ownerId` (read back as the object `owner{id,…}`),
#     `enableHighAvailability` (`highAvailabilityEnabled`), `maxmemoryPolicy`
#     (`options{maxmemoryPolicy}`);
#   - read back, never declared: `owner`, `options`, `environmentId` (a resource in a Render
#     environment), `ipAllowList`, `readReplicas` (postgres), `maintenance`.
# Everything else (name, plan, version, region, database name and user, disk size) is compared:
# a real drift still shows. `adopt --check` compares the ignored settings against the live ones.
ADOPTED_POSTGRES_IGNORE = (
    "ownerId",
    "enableHighAvailability",
    "owner",
    "environmentId",
    "ipAllowList",
    "readReplicas",
    "maintenance",
)
ADOPTED_KEY_VALUE_IGNORE = (
    "ownerId",
    "maxmemoryPolicy",
    "owner",
    "options",
    "environmentId",
    "ipAllowList",
    "maintenance",
)


def _stateful(import_id: str | None, adopted_ignore: tuple[str, ...]) -> pulumi.ResourceOptions:
    # protect: `pulumi destroy` or a removed declaration fails instead of deleting data;
    # retain_on_delete: even a forced removal from the stack leaves the database on Render.
    # The ignore list applies to adopted resources only: a created one reads back what it was
    # created with plus outputs (the provider keeps the old inputs on refresh), so nothing to hide.
    return pulumi.ResourceOptions(
        protect=True,
        retain_on_delete=True,
        import_=import_id,
        ignore_changes=list(adopted_ignore) if import_id else None,
    )


def datastores(settings: Settings) -> Datastores:
    pg = settings.postgres
    postgres = render.postgres.Postgres(
        POSTGRES,
        name=pg.name,
        owner_id=settings.owner_id,
        plan=render.postgres.Plan(pg.plan),
        version=render.postgres.Version(pg.version),
        region=settings.region,
        disk_size_gb=pg.disk_size_gb,
        enable_high_availability=pg.high_availability,
        database_name=pg.database_name,
        database_user=pg.database_user,
        opts=_stateful(pg.import_id, ADOPTED_POSTGRES_IGNORE),
    )
    kv = settings.key_value
    key_value = render.key_value.KeyValue(
        KEY_VALUE,
        name=kv.name,
        owner_id=settings.owner_id,
        plan=render.key_value.Plan(kv.plan),
        maxmemory_policy=render.key_value.MaxmemoryPolicy(kv.maxmemory_policy),
        region=settings.region,
        opts=_stateful(kv.import_id, ADOPTED_KEY_VALUE_IGNORE),
    )
    # The provider does not mark connection info secret; without the wrapper the password would
    # sit in plaintext in the state file and in every preview diff.
    pg_info = render.postgres.get_postgres_connection_info_output(postgres_id=postgres.id)
    kv_info = render.key_value.get_key_value_connection_info_output(key_value_id=key_value.id)
    return Datastores(
        postgres=postgres,
        key_value=key_value,
        database_url=pulumi.Output.secret(pg_info.internal_connection_string),
        redis_url=pulumi.Output.secret(kv_info.internal_connection_string),
    )
