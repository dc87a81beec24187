"""Drift: `preview --refresh` reads the live state first; what pulumi-render's refresh always
reports, drift or not, is taken out of the summary so a real drift stands out.

The known noise, from the source: on refresh the framework's Read overwrites each input the
state already has with the value of the GET answer, filtered like an import
(cloudy-sky-software/pulumi-provider-framework rest/provider.go `Read`, "Only update values of
properties that already exist in inputs"; openapi/properties.go `FilterReadOnlyProperties`).
A web service's `serviceDetails` is such an input, so after a refresh it carries what Render
returns and the program never declares (numInstances, env, previews, …) and lacks what Render
returns elsewhere (preDeployCommand): the next diff is an `update` of every web service, with
nothing drifted. Those paths are exactly the `serviceDetails.*` entries of the adopted-service
ignore list (program/api.py `adopted_service_ignore`, proven against the spec by
tests/adopt/test_ignore_lists.py). Datastores have no such noise: their refreshed inputs are the
values the program declares (name, plan, region, version, …).
"""

from __future__ import annotations

import dataclasses

from koinonia_infra.deploy.types import WEB_SERVICE, ChangePlan
from koinonia_infra.program.api import adopted_service_ignore

REFRESH_NOISE: frozenset[str] = frozenset(
    path
    for runtime in ("node", "docker")
    for path in adopted_service_ignore(runtime)
    if path.startswith("serviceDetails.")
)


@dataclasses.dataclass(frozen=True)
class Filtered:
    plan: ChangePlan
    noise: list[str]  # logical names whose only change is refresh noise


def is_noise(paths: tuple[str, ...]) -> bool:
    return bool(paths) and all(path in REFRESH_NOISE for path in paths)


def filter_refresh_noise(plan: ChangePlan) -> Filtered:
    """The plan with each web-service update that is only refresh noise counted as unchanged."""
    noise = [
        s for s in plan.steps if s.op == "update" and s.type == WEB_SERVICE and is_noise(s.paths)
    ]
    if not noise:
        return Filtered(plan, [])
    urns = {s.urn for s in noise}
    steps = [dataclasses.replace(s, op="same") if s.urn in urns else s for s in plan.steps]
    summary = dict(plan.summary)
    summary["update"] = summary.get("update", 0) - len(noise)
    if summary["update"] <= 0:
        del summary["update"]
    summary["same"] = summary.get("same", 0) + len(noise)
    filtered = dataclasses.replace(plan, steps=steps, summary=summary)
    return Filtered(filtered, sorted(s.name for s in noise))
