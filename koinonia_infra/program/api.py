"""The API instances: N identical Render web services built by ONE spec function.

Only the name and the instance label differ between instances.

Environment variables: a service is CREATED with its full environment inline, and the
`EnvVarsForService` of the service owns every later change. Why both (read in
cloudy-sky-software/pulumi-render, provider/pkg/provider/provider.go, and its framework
cloudy-sky-software/pulumi-provider-framework, rest/provider.go):

- Render starts a service's first deploy when `POST /services` creates it (the response carries
  its `deployId`, see OnPostCreate). That deploy runs with the env given in the POST body
  (`envVars` is in the `webService` create schema). The provider's OnPostCreate triggers no
  deploy, and `EnvVarsForService` is created after the service (it needs its id) with a
  `PUT /services/{id}/env-vars`, which applies only to the NEXT deploy. Without the inline env
  the first deploy boots with none (no DATABASE_URL, Render's default PORT 10000).
- `envVars` is not in the PATCH schema (`webServicePatch`), so the provider's Diff (OnDiff,
  provider/pkg/provider/request.go) REPLACES a service whose inline env changed. Hence
  `ignore_changes=["envVars"]`: the engine resets the property to its old input before Diff
  (pulumi/pulumi pkg/resource/deploy/step_generator.go, processIgnoreChanges), and drops it
  when the old inputs have none (sdk/go/common/resource/properties_path.go, Reset), which is
  the case of an adopted service: the framework's Read builds its inputs from `GET
  /services/{id}`, which has no env. So neither a later env change nor an import plans a replace.
- `EnvVarsForService` is created with the same full set (a PUT replacing the set with itself,
  no deploy: OnPostCreate triggers none). An UPDATE of it PUTs the set and then the provider
  triggers a deploy of that service (OnPostUpdate, `POST /services/{id}/deploys`) without
  waiting for it (a WebService's UPDATE too): `up` therefore applies these updates of running
  instances one instance at a time (deploy/instance_rollout.py).
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


# The inline env is read by Render only at creation; later changes belong to EnvVarsForService.
INITIAL_ONLY = ["envVars"]


# What an IMPORT of a live web service reads back differently from what the program declares
# (the same rules as koinonia_infra/program/datastores.py, ADOPTED_POSTGRES_IGNORE): the provider
# turns `GET /services/{id}` into the old inputs, dropping `id` and the non-object values the
# create schema (`webService` = servicePOST + webServiceDetailsPOST) does not name, recursing
# into `serviceDetails` only (cloudy-sky-software/pulumi-provider-framework
# openapi/properties.go `FilterReadOnlyProperties`). Any difference under `serviceDetails` is an
# UPDATE (it is in webServicePatch), i.e. a PATCH and a redeploy (pulumi-render
# provider/pkg/provider/provider.go OnDiff, OnPostUpdate). From pulumi-render's vendored spec
# (provider/cmd/pulumi-resource-render/openapi_generated.yml: service, webServiceDetailsOutput,
# nativeEnvironmentDetails, dockerDetails), read back and never declared, or declared and read
# back elsewhere (`preDeployCommand` comes back inside envSpecificDetails); proven against the
# spec by tests/adopt/test_ignore_lists.py. Name, repo, branch, root dir, auto-deploy, plan,
# region, runtime, health path, shutdown delay and build/start commands are still compared.
ADOPTED_SERVICE_IGNORE = (
    "buildFilter",
    "environmentId",
    "registryCredential",
    "serviceDetails.autoscaling",
    "serviceDetails.cache",
    "serviceDetails.disk",
    "serviceDetails.env",
    "serviceDetails.maintenanceMode",
    "serviceDetails.numInstances",
    "serviceDetails.parentServer",
    "serviceDetails.previews",
    "serviceDetails.renderSubdomainPolicy",
    "serviceDetails.preDeployCommand",
)
# envSpecificDetails comes back with the keys of dockerDetails and nativeEnvironmentDetails;
# the program declares the native pair or the docker command, depending on the runtime.
ENV_SPECIFIC_READ_BACK = (
    "buildCommand",
    "dockerCommand",
    "dockerContext",
    "dockerfilePath",
    "preDeployCommand",
    "registryCredential",
    "startCommand",
)


def adopted_service_ignore(runtime: str) -> list[str]:
    declared = {"dockerCommand"} if runtime in DOCKER_RUNTIMES else {"buildCommand", "startCommand"}
    nested = [
        f"serviceDetails.envSpecificDetails.{key}"
        for key in ENV_SPECIFIC_READ_BACK
        if key not in declared
    ]
    return [*ADOPTED_SERVICE_IGNORE, *nested]


def initial_env_options(
    *, import_: str | None = None, runtime: str = "node"
) -> pulumi.ResourceOptions:
    """Options of a service created with its env inline: env changes never diff (no replace),
    and the values, secret connection strings among them, stay secret in the state. An adopted
    service (`import_`) also ignores what Render reads back differently (no PATCH, no deploy)."""
    adopted = adopted_service_ignore(runtime) if import_ else []
    return pulumi.ResourceOptions(
        import_=import_,
        ignore_changes=[*INITIAL_ONLY, *adopted],
        additional_secret_outputs=INITIAL_ONLY,
    )


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
    env = instance_env(settings, number, stores, secrets)
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
        # The first deploy's environment (see the module docstring).
        env_vars=env_vars(env),
        opts=initial_env_options(import_=api.import_ids.get(number), runtime=api.runtime),
    )
    env_resource = svc.EnvVarsForService(
        f"{logical}-env",
        service_id=service.id,
        env_vars=env_vars(env),
        opts=pulumi.ResourceOptions(depends_on=[stores.postgres, stores.key_value]),
    )
    port = api.port
    return ApiInstance(
        number=number,
        name=name,
        service=service,
        env=env_resource,
        private_address=service.slug.apply(lambda slug: private_address(str(slug), port)),
    )
