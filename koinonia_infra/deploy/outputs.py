"""Stack outputs → the deployment descriptor (the shape the sandbox writes and `verify` reads)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koinonia_infra.deploy.engine import open_stack
from koinonia_infra.descriptor import Descriptor, EdgeRef, parse_descriptor
from koinonia_infra.errors import ConfigError
from koinonia_infra.project import find_project_dir, stack_path

if TYPE_CHECKING:
    from koinonia_infra.settings import Settings

EdgeLookup = Callable[[str], str | None]


def descriptor_from_outputs(
    outputs: Mapping[str, Any],
    *,
    stack: str,
    project_dir: Path | None = None,
    edge_lookup: EdgeLookup | None = None,
    settings: Settings | None = None,
) -> Descriptor:
    """The descriptor (same shape the sandbox writes) from the stack outputs, with the edge's
    name from the stack's settings (`settings`, else read from its file) and its service id
    looked up by name when a lookup is given."""
    data: dict[str, Any] = {k: outputs[k] for k in outputs}
    data["stack"] = stack
    render_url = os.environ.get("RENDER_API_URL")
    if render_url:
        data["renderApiUrl"] = render_url
    if settings is None:
        from koinonia_infra.settings import load_settings

        try:
            settings = load_settings(stack_path(stack, project_dir or find_project_dir()))
        except (ConfigError, OSError):
            settings = None
    if settings is not None:
        data["environment"] = settings.verify.environment
        if settings.edge.enabled:
            service_id = edge_lookup(settings.edge.name) if edge_lookup else None
            data["edge"] = EdgeRef(name=settings.edge.name, service_id=service_id).model_dump(
                by_alias=True, exclude_none=True
            )
    return parse_descriptor(data, source=f"outputs of stack {stack}")


def render_edge_lookup(api_url: str | None = None) -> EdgeLookup | None:
    """Find the edge's service id by name through the Render API, when a key is available;
    `api_url`: the command's `--render-api-url`."""
    from koinonia_infra.errors import RenderApiError
    from koinonia_infra.render_api import RenderClient, api_access

    # The one rule of where the user's key may go (render_api.api_access).
    access = api_access(None, api_url)
    if access is None:
        return None

    def lookup(name: str) -> str | None:
        try:
            with RenderClient(access.url, access.key) as client:
                found = [s for s in client.find_services(name) if s.name == name]
        except RenderApiError:
            return None
        return found[0].id if len(found) == 1 else None

    return lookup


def read_descriptor(
    stack: str, *, settings: Settings | None = None, api_url: str | None = None
) -> Descriptor:
    """The deployment descriptor of `stack`, from its outputs (used by `--stack`). `settings`:
    the stack's, when the command has read them already; `api_url`: its `--render-api-url`."""
    project_dir = find_project_dir()
    engine = open_stack(stack, project_dir=project_dir, need_render_key=False, policy=False)
    return descriptor_of_outputs(
        engine.outputs(), stack=stack, project_dir=project_dir, settings=settings, api_url=api_url
    )


def descriptor_of_outputs(
    outputs: Mapping[str, Any],
    *,
    stack: str,
    project_dir: Path | None = None,
    settings: Settings | None = None,
    api_url: str | None = None,
) -> Descriptor:
    """`descriptor_from_outputs` for a stack that must have been deployed, with the edge looked
    up through the Render API when a key is set."""
    if not outputs:
        raise ConfigError(f"stack {stack} has no outputs yet: run `koinonia-infra up` first")
    return descriptor_from_outputs(
        outputs,
        stack=stack,
        project_dir=project_dir,
        edge_lookup=render_edge_lookup(api_url),
        settings=settings,
    )
