"""What the engine and pulumi-render do when a live Render resource is imported, so `adopt` can
say, before any engine runs, whether adopting it changes nothing.

Three steps, each from the real source:

1. Read (cloudy-sky-software/pulumi-provider-framework rest/provider.go `Read`, import case):
   the old inputs are the `GET` answer minus `id` and minus every NON-object value whose key the
   create schema does not name (openapi/properties.go `FilterReadOnlyProperties`; for a service
   the create schema is picked by `type` and the filter recurses into `serviceDetails`). Object
   values (`owner`, `options`, …) are always kept.
2. ignoreChanges (pulumi/pulumi pkg/resource/deploy/step.go `ImportStep.Apply` →
   step_generator.go `processIgnoreChanges` → sdk/go/common/resource/properties_path.go
   `Reset`): each ignored path of the new inputs takes the old value, or is removed when the
   old inputs have none.
3. Diff: an import does not end at the import step: once it resolves, the engine continues
   with the normal step generation against the program's goal (pulumi/pulumi
   pkg/resource/deploy/step_generator.go, `continueResourceImportEvent`), i.e. the provider's
   Diff of the imported inputs and the declared ones: of the top-level keys added, removed
   or changed, a key the PATCH schema lacks is a REPLACE, one it has an UPDATE (framework
   rest/request.go `determineDiffsAndReplacements`; for services pulumi-render
   provider/pkg/provider/provider.go `OnDiff` with `webServicePatch`). An update of a service
   PATCHes it and triggers a deploy (`OnPostUpdate`).

Key sets: Render's spec as pulumi-render embeds it
(provider/cmd/pulumi-resource-render/openapi_generated.yml); tests/adopt/test_ignore_lists.py
checks each set against that file's schemas.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

POSTGRES = "render:postgres:Postgres"
KEY_VALUE = "render:key-value:KeyValue"
WEB_SERVICE = "render:services:WebService"

# postgresPOSTInput / postgresPATCHInput
POSTGRES_CREATE_KEYS: Final = frozenset({
    "databaseName", "databaseUser", "datadogAPIKey", "datadogSite", "diskSizeGB",
    "enableHighAvailability", "environmentId", "ipAllowList", "name", "ownerId", "plan",
    "readReplicas", "region", "version",
})  # fmt: skip
POSTGRES_PATCH_KEYS: Final = frozenset({
    "datadogAPIKey", "datadogSite", "diskSizeGB", "enableHighAvailability", "ipAllowList",
    "name", "plan", "readReplicas",
})  # fmt: skip
# keyValuePOSTInput / keyValuePATCHInput
KEY_VALUE_CREATE_KEYS: Final = frozenset({
    "environmentId", "ipAllowList", "maxmemoryPolicy", "name", "ownerId", "plan", "region",
})  # fmt: skip
KEY_VALUE_PATCH_KEYS: Final = frozenset({"ipAllowList", "maxmemoryPolicy", "name", "plan"})
# webService = servicePOST + {serviceDetails: webServiceDetailsPOST, type}
SERVICE_CREATE_KEYS: Final = frozenset({
    "autoDeploy", "branch", "buildFilter", "envVars", "environmentId", "image", "name",
    "ownerId", "repo", "rootDir", "secretFiles", "serviceDetails", "type",
})  # fmt: skip
WEB_SERVICE_DETAILS_CREATE_KEYS: Final = frozenset({
    "autoscaling", "disk", "env", "envSpecificDetails", "healthCheckPath", "maintenanceMode",
    "maxShutdownDelaySeconds", "numInstances", "plan", "preDeployCommand", "previews",
    "pullRequestPreviewsEnabled", "region", "renderSubdomainPolicy", "runtime",
})  # fmt: skip
# webServicePatch = servicePATCH + {serviceDetails, type}
WEB_SERVICE_PATCH_KEYS: Final = frozenset({
    "autoDeploy", "branch", "buildFilter", "image", "name", "repo", "rootDir",
    "serviceDetails", "type",
})  # fmt: skip

CREATE_KEYS: Final = {
    POSTGRES: POSTGRES_CREATE_KEYS,
    KEY_VALUE: KEY_VALUE_CREATE_KEYS,
    WEB_SERVICE: SERVICE_CREATE_KEYS,
}
PATCH_KEYS: Final = {
    POSTGRES: POSTGRES_PATCH_KEYS,
    KEY_VALUE: KEY_VALUE_PATCH_KEYS,
    WEB_SERVICE: WEB_SERVICE_PATCH_KEYS,
}


def _filter(values: dict[str, Any], create_keys: Iterable[str]) -> None:
    keys = frozenset(create_keys)
    for key in list(values):
        if key == "id" or (not isinstance(values[key], dict) and key not in keys):
            del values[key]


def imported_inputs(resource_type: str, live: Mapping[str, Any]) -> dict[str, Any]:
    """The old inputs the provider's Read builds from a GET answer on import (step 1)."""
    inputs = copy.deepcopy(dict(live))
    _filter(inputs, CREATE_KEYS[resource_type])
    details = inputs.get("serviceDetails")
    if resource_type == WEB_SERVICE and isinstance(details, dict):
        _filter(details, WEB_SERVICE_DETAILS_CREATE_KEYS)
    return inputs


def apply_ignore_changes(
    olds: Mapping[str, Any], news: Mapping[str, Any], paths: Iterable[str]
) -> dict[str, Any]:
    """`news` with each dotted path reset to its old value, or removed (step 2)."""
    result = copy.deepcopy(dict(news))
    for path in paths:
        *parents, leaf = path.split(".")
        old: Any = olds
        new: Any = result
        for part in parents:
            old = old.get(part) if isinstance(old, dict) else None
            new = new.get(part) if isinstance(new, dict) else None
        if not isinstance(new, dict):
            continue
        if isinstance(old, dict) and leaf in old:
            new[leaf] = copy.deepcopy(old[leaf])
        else:
            new.pop(leaf, None)
    return result


@dataclass(frozen=True)
class ImportDiff:
    """What the engine plans after importing: nothing, an update, or a replace (step 3)."""

    replaces: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)
    # The differing fields, dotted (`serviceDetails.plan`): what a reader must fix.
    fields: list[str] = field(default_factory=list)

    @property
    def no_change(self) -> bool:
        return not self.replaces and not self.updates


def import_diff(
    resource_type: str,
    live: Mapping[str, Any],
    declared: Mapping[str, Any],
    ignore_changes: Iterable[str],
) -> ImportDiff:
    olds = imported_inputs(resource_type, live)
    news = apply_ignore_changes(olds, declared, ignore_changes)
    patchable = PATCH_KEYS[resource_type]
    changed = sorted(
        key for key in set(olds) | set(news) if key not in olds or key not in news
        or olds[key] != news[key]
    )  # fmt: skip
    return ImportDiff(
        replaces=[k for k in changed if k not in patchable],
        updates=[k for k in changed if k in patchable],
        fields=nested_differences(olds, news),
    )


def nested_differences(olds: Any, news: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two input trees differ (for messages: which field, not just which key)."""
    if isinstance(olds, dict) and isinstance(news, dict):
        paths: list[str] = []
        for key in sorted(set(olds) | set(news)):
            path = f"{prefix}.{key}" if prefix else key
            if key not in olds or key not in news:
                paths.append(path)
            else:
                paths += nested_differences(olds[key], news[key], path)
        return paths
    return [] if olds == news else [prefix]
