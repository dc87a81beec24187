"""The edge: a Render web service running the pinned Caddy image in front of the instances.

The Caddyfile travels as an environment variable: inline at creation, so the edge's first deploy
boots with it, and in the edge's `EnvVarsForService` for every later change (which must not
replace the edge; see api.py for why both). The container's command writes it to a file before
starting Caddy. Its upstreams are exactly the declared instances, so removing an instance from the
settings removes it from the edge in the same update.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_render as render

from koinonia_infra import caddy
from koinonia_infra.caddy import EDGE_SELF_HEALTH_PATH, edge_start_command, render_caddyfile
from koinonia_infra.program.api import ApiInstance, env_vars, initial_env_options
from koinonia_infra.settings import Settings

svc = render.services

EDGE = "edge"
CADDYFILE_ENV = caddy.CADDYFILE_ENV  # defined with the command that reads it
# Render's docker command replaces the image's CMD (render.com/docs/deploy-an-image: "a custom
# Docker CMD"), and the official image has no ENTRYPOINT (caddyserver/caddy-docker
# 2.6/alpine/Dockerfile), so this shell is the container's first process. Its text is
# edge_start_command(), which the sandbox runs too, with only its paths changed.
DOCKER_COMMAND = "/bin/sh -c " + shlex.quote(edge_start_command())


@dataclass(frozen=True)
class Edge:
    service: svc.WebService
    env: svc.EnvVarsForService
    caddyfile: pulumi.Output[str]


def edge(settings: Settings, instances: Sequence[ApiInstance]) -> Edge:
    conf = settings.edge
    health_path = settings.api.health_check_path
    caddyfile = pulumi.Output.all(*(i.private_address for i in instances)).apply(
        lambda upstreams: render_caddyfile(
            [str(u) for u in upstreams], conf, health_path=health_path
        )
    )
    edge_env: dict[str, pulumi.Input[str]] = {CADDYFILE_ENV: caddyfile}
    service = svc.WebService(
        EDGE,
        name=conf.name,
        owner_id=settings.owner_id,
        image=svc.ImageArgs(image_path=conf.image, owner_id=settings.owner_id),
        # A pinned image: a new tag is a reviewed settings change, never an automatic deploy.
        auto_deploy=svc.ServiceCreateAutoDeploy.NO,
        service_details=svc.WebServiceDetailsCreateArgs(
            runtime=svc.WebServiceDetailsCreateRuntime.IMAGE,
            plan=svc.WebServiceDetailsCreatePlan(conf.plan),
            region=svc.WebServiceDetailsCreateRegion(settings.region),
            # Answered by Caddy itself, so an outage of every instance does not also get the
            # edge restarted in a loop.
            health_check_path=EDGE_SELF_HEALTH_PATH,
            env_specific_details=svc.EnvSpecificDetailsCreateArgs(docker_command=DOCKER_COMMAND),
        ),
        # Without it the first deploy would write an empty Caddyfile (see api.py).
        env_vars=env_vars(edge_env),
        opts=initial_env_options(),
    )
    env = svc.EnvVarsForService(
        f"{EDGE}-env",
        service_id=service.id,
        env_vars=env_vars(edge_env),
    )
    return Edge(service=service, env=env, caddyfile=caddyfile)
