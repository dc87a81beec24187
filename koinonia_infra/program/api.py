"""The API instances: N identical Render web services built by ONE spec function.

Only the name and the instance label differ between instances. Environment variables live in a
separate `EnvVarsForService` per service: `envVars` is not in Render's PATCH schema, so the
provider would REPLACE a service (new id, new URL, downtime) to change one variable inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_render as render

from koinonia_infra.program.datastores import Datastores
from koinonia_infra.settings import Settings

svc = render.services

DOCKER_RUNTIMES = frozenset({"docker", "image"})


def logical_name(number: int) -> str:
    """Stable per instance number: removing instance 1 never renames instance 2."""
    return f"api-{number}"


def private_address(slug: str, port: int) -> str:
    """Where the edge reaches a service on Render's private network.

    Render documents private hostnames as `<service-name>-<hash>`; the service's `slug` is used
    as that hostname, as Pulumi's own Render examples do. This is an inference: confirm it in the
    dashboard (service → Connect → Internal) and change it here, the only place that knows.
    """
    return f"{slug}:{port}"


@dataclass(frozen=True)
class ApiInstance:
    number: int
    name: str
    service: svc.WebService
    env: svc.EnvVarsForService
    private_address: pulumi.Output[str]


def env_vars(items: Mapping[str, pulumi.Input[str]]) -> list[svc.EnvVarInputArgs]:
    # Sorted so that registration (and therefore diffs) never depend on dict order.
    return [svc.EnvVarInputArgs(key=key, value=items[key]) for key in sorted(items)]


def instance_env(
    settings: Settings,
    number: int,
    stores: Datastores,
    secrets: Mapping[str, pulumi.Output[str]],
) -> dict[str, pulumi.Input[str]]:
    api = settings.api
    return {
        **api.env,
        **secrets,
        "DATABASE_URL": stores.database_url,
        "REDIS_URL": stores.redis_url,
        "NODE_ENV": api.node_env,
        "PORT": str(api.port),
        "KOINONIA_INSTANCE": str(number),
    }


def _env_specific_details(settings: Settings) -> svc.EnvSpecificDetailsCreateArgs:
    api = settings.api
    if api.runtime in DOCKER_RUNTIMES:
        return svc.EnvSpecificDetailsCreateArgs(docker_command=api.start_command or None)
    return svc.EnvSpecificDetailsCreateArgs(
        build_command=api.build_command, start_command=api.start_command
    )


def api_instance(
    settings: Settings,
    number: int,
    stores: Datastores,
    secrets: Mapping[str, pulumi.Output[str]],
) -> ApiInstance:
    """The one spec every instance is built from; `number` only picks the name and the label."""
    api = settings.api
    name = api.service_name(number)
    logical = logical_name(number)
    service = svc.WebService(
        logical,
        name=name,
        owner_id=settings.owner_id,
        repo=api.repo,
        branch=api.branch,
        root_dir=api.root_dir,
        auto_deploy=svc.ServiceCreateAutoDeploy("yes" if api.auto_deploy else "no"),
        service_details=svc.WebServiceDetailsCreateArgs(
            runtime=svc.WebServiceDetailsCreateRuntime(api.runtime),
            plan=svc.WebServiceDetailsCreatePlan(api.plan),
            region=svc.WebServiceDetailsCreateRegion(settings.region),
            health_check_path=api.health_check_path,
            max_shutdown_delay_seconds=api.max_shutdown_delay_seconds,
            pre_deploy_command=api.pre_deploy_command,
            env_specific_details=_env_specific_details(settings),
        ),
        opts=pulumi.ResourceOptions(import_=api.import_ids.get(number)),
    )
    env = svc.EnvVarsForService(
        f"{logical}-env",
        service_id=service.id,
        env_vars=env_vars(instance_env(settings, number, stores, secrets)),
        opts=pulumi.ResourceOptions(depends_on=[stores.postgres, stores.key_value]),
    )
    port = api.port
    return ApiInstance(
        number=number,
        name=name,
        service=service,
        env=env,
        private_address=service.slug.apply(lambda slug: private_address(str(slug), port)),
    )
