"""The real engine's and provider's rules for "will this update REPLACE a web service?", as
plain functions over registered inputs (imported by name: no package).

Written from the real sources, not from our mocks, so a program change that would make the first
real `up` replace a service (new id, new URL, downtime) fails here:

- cloudy-sky-software/pulumi-provider-framework, rest/provider.go, `Diff`: the provider diffs the
  OLD INPUTS against the new inputs (`olds.Diff(news)`), then hands the diff to the Render
  provider's `OnDiff`.
- cloudy-sky-software/pulumi-render, provider/pkg/provider/provider.go `OnDiff` and
  provider/pkg/provider/request.go `determineDiffsAndReplacements`: for a WebService, every added,
  updated or deleted property that is not in the `webServicePatch` schema forces a replacement.
  `webServicePatch` = allOf(`servicePATCH`, {serviceDetails, type}) in
  provider/cmd/pulumi-resource-render/openapi_generated.yml.
- pulumi/pulumi, pkg/resource/deploy/step_generator.go `processIgnoreChanges` with
  sdk/go/common/resource/properties_path.go `Reset`: before Diff, each ignored property of the
  new inputs is set to its old value, or deleted when the old inputs do not have it.
- An adopted service's old inputs come from the framework's `Read` (rest/provider.go): the
  `GET /services/{id}` answer filtered to the create schema's writable properties. Render's
  service object carries no env, so they never hold `envVars`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

WEB_SERVICE_PATCHABLE = frozenset(
    {"autoDeploy", "branch", "buildFilter", "image", "name", "repo", "rootDir"}  # servicePATCH
    | {"serviceDetails", "type"}  # webServicePatch's own part
)
# Writable properties of the create body that Render's service object never returns.
NOT_READ_BACK = frozenset({"envVars", "secretFiles"})


def apply_ignore_changes(
    news: Mapping[str, Any], olds: Mapping[str, Any], ignore_changes: Iterable[str]
) -> dict[str, Any]:
    """Top-level paths only (all the program uses)."""
    result = dict(news)
    for key in ignore_changes:
        if key in olds:
            result[key] = olds[key]
        else:
            result.pop(key, None)
    return result


def web_service_replaces(
    olds: Mapping[str, Any], news: Mapping[str, Any], ignore_changes: Iterable[str] = ()
) -> list[str]:
    """The properties that would force a replacement of a WebService, sorted."""
    news = apply_ignore_changes(news, olds, ignore_changes)
    changed = {k for k in olds.keys() | news.keys() if olds.get(k) != news.get(k)}
    return sorted(k for k in changed if k not in WEB_SERVICE_PATCHABLE)


def read_back_on_import(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The old inputs an import of an existing service with these settings starts from."""
    return {k: v for k, v in inputs.items() if k not in NOT_READ_BACK}
