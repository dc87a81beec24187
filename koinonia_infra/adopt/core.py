"""`adopt`: find what production runs, through Render's API, and write into the stack file
everything an import needs to change nothing; `adopt --check` tells whether it still matches.

The values written are the ones the provider reads back on import (koinonia_infra/adopt/
provider.py): a stack file that declares them makes the import of instance 1, the Postgres and
the Key Value a no-op, given the program's ignore lists for adopted resources (program/api.py
`adopted_service_ignore`, program/datastores.py `ADOPTED_*_IGNORE`). Env values are never read
into, printed by or passed on a command line by this module: only their keys.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from koinonia_infra.adopt.provider import (
    KEY_VALUE,
    POSTGRES,
    WEB_SERVICE,
    ImportDiff,
    import_diff,
)
from koinonia_infra.deploy.stackfile import _yaml, settings_of_text
from koinonia_infra.errors import ConfigError, UsageError
from koinonia_infra.settings import (
    NAMESPACE,
    RESERVED_ENV,
    Settings,
    load_yaml_strict,
    looks_secret,
    read_stack_text,
)

SECTIONS = ("api", "postgres", "keyValue")
# Render's service types other than a web service (spec: serviceType); only a web service can be
# an API instance behind the edge (a private service has no public URL, a static site no process).
WEB_SERVICE_TYPE = "web_service"


class LiveApi(Protocol):
    """The reads adopt needs (koinonia_infra.render_api.RenderClient has them)."""

    def services_named(self, name: str) -> list[dict[str, Any]]: ...
    def service_json(self, service_id: str) -> dict[str, Any]: ...
    def postgres_named(self, name: str) -> list[dict[str, Any]]: ...
    def postgres_json(self, postgres_id: str) -> dict[str, Any]: ...
    def key_values_named(self, name: str) -> list[dict[str, Any]]: ...
    def key_value_json(self, key_value_id: str) -> dict[str, Any]: ...
    def env_var_keys(self, service_id: str) -> list[str]: ...


@dataclass(frozen=True)
class Names:
    service: str
    postgres: str
    key_value: str

    @classmethod
    def of(
        cls,
        settings: Settings,
        *,
        service: str | None = None,
        postgres: str | None = None,
        key_value: str | None = None,
    ) -> Names:
        """Flags first, else the stack file's names."""
        return cls(
            service=service or settings.api.name,
            postgres=postgres or settings.postgres.name,
            key_value=key_value or settings.key_value.name,
        )


def _names_of_text(
    text: str,
    *,
    source: str,
    service: str | None,
    postgres: str | None,
    key_value: str | None,
) -> Names:
    """The names to look up, from a stack file `adopt` is about to complete: one without an
    `ownerId` yet is not valid, but its names (or the defaults) still say what to adopt. The
    edited file is validated in full before anything is written."""
    from koinonia_infra.settings import (
        ApiSettings,
        KeyValueSettings,
        PostgresSettings,
        stack_config_of_text,
    )

    try:
        return Names.of(
            settings_of_text(text, source=source),
            service=service,
            postgres=postgres,
            key_value=key_value,
        )
    except ConfigError:
        config = stack_config_of_text(text, source=source)  # YAML errors stay errors

    def name(section: str, default: str) -> str:
        data = config.get(section)
        value = data.get("name") if isinstance(data, Mapping) else None
        return value if isinstance(value, str) else default

    return Names(
        service=service or name("api", ApiSettings().name),
        postgres=postgres or name("postgres", PostgresSettings().name),
        key_value=key_value or name("keyValue", KeyValueSettings().name),
    )


@dataclass(frozen=True)
class Live:
    """The GET answers (GET /services/{id}, /postgres/{id}, /key-value/{id}) and the env keys."""

    service: dict[str, Any]
    postgres: dict[str, Any]
    key_value: dict[str, Any]
    env_keys: list[str]


def _one(found: list[dict[str, Any]], name: str, what: str, flag: str) -> dict[str, Any]:
    # The API's `name` filter is not documented as exact; only an exact name counts.
    exact = [item for item in found if item.get("name") == name]
    if not exact:
        raise UsageError(
            f"no Render {what} named {name!r} is visible to this API key; check {flag} "
            "(or the name in the stack file) and the key's workspace"
        )
    if len(exact) > 1:
        ids = ", ".join(str(item.get("id")) for item in exact)
        raise UsageError(
            f"{len(exact)} Render {what}s are named {name!r} ({ids}); adopt cannot tell which one "
            "production is: rename the other one in the dashboard"
        )
    return exact[0]


def find_live(api: LiveApi, names: Names) -> Live:
    listed = _one(api.services_named(names.service), names.service, "service", "--service")
    kind = listed.get("type")
    if kind != WEB_SERVICE_TYPE:
        shown = str(kind).replace("_", " ") if kind else "service of unknown type"
        raise UsageError(
            f"{names.service} ({listed.get('id')}) is a {shown}, not a web service: only a web "
            "service can be adopted as API instance 1"
        )
    service_id = str(listed["id"])
    service = api.service_json(service_id)
    pg = _one(api.postgres_named(names.postgres), names.postgres, "Postgres", "--postgres")
    kv = _one(api.key_values_named(names.key_value), names.key_value, "Key Value", "--key-value")
    return Live(
        service=service,
        postgres=api.postgres_json(str(pg["id"])),
        key_value=api.key_value_json(str(kv["id"])),
        env_keys=api.env_var_keys(service_id),
    )


# ------------------------------------------------------------------------------------------
# What the stack file must say
# ------------------------------------------------------------------------------------------


def _owner_id(data: Mapping[str, Any]) -> str | None:
    # Services carry `ownerId`; datastores the object `owner{id, …}` (spec: service,
    # postgresDetail, keyValueDetail).
    owner = data.get("owner")
    if isinstance(owner, dict) and isinstance(owner.get("id"), str):
        return str(owner["id"])
    value = data.get("ownerId")
    return value if isinstance(value, str) else None


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def stack_values(live: Live) -> dict[str, Any]:
    """{ownerId, region, api{…}, postgres{…}, keyValue{…}} in stack-file keys, from the live
    resources; UsageError when they cannot live in one stack (two workspaces, two regions)."""
    service, pg, kv = live.service, live.postgres, live.key_value
    details = service.get("serviceDetails") or {}
    owners = {
        f"service {service.get('name')}": _owner_id(service),
        f"Postgres {pg.get('name')}": _owner_id(pg),
        f"Key Value {kv.get('name')}": _owner_id(kv),
    }
    if len(set(owners.values())) != 1 or None in owners.values():
        listed = ", ".join(f"{what}: {owner}" for what, owner in owners.items())
        raise UsageError(f"the live resources are not in one Render workspace ({listed})")
    regions = {
        f"service {service.get('name')}": details.get("region"),
        f"Postgres {pg.get('name')}": pg.get("region"),
        f"Key Value {kv.get('name')}": kv.get("region"),
    }
    if len(set(regions.values())) != 1:
        listed = ", ".join(f"{what}: {region}" for what, region in regions.items())
        raise UsageError(
            f"the live resources are in different regions ({listed}); the stack has one region"
        )
    runtime = details.get("runtime") or details.get("env")
    env_specific = details.get("envSpecificDetails") or {}
    api: dict[str, Any] = {"name": service.get("name")}
    _put(api, "plan", details.get("plan"))
    _put(api, "runtime", runtime)
    _put(api, "repo", service.get("repo"))
    _put(api, "branch", service.get("branch"))
    auto = service.get("autoDeploy")
    if auto in ("yes", "no"):
        api["autoDeploy"] = auto == "yes"
    # Render answers "" for no root directory; the import reads that back, so it is declared.
    _put(api, "rootDir", service.get("rootDir"))
    if runtime in ("docker", "image"):
        _put(api, "startCommand", env_specific.get("dockerCommand"))
    else:
        _put(api, "buildCommand", env_specific.get("buildCommand"))
        _put(api, "startCommand", env_specific.get("startCommand"))
    _put(api, "preDeployCommand", env_specific.get("preDeployCommand") or None)
    _put(api, "healthCheckPath", details.get("healthCheckPath"))
    _put(api, "maxShutdownDelaySeconds", details.get("maxShutdownDelaySeconds"))
    api["importIds"] = {1: service.get("id")}
    postgres: dict[str, Any] = {"name": pg.get("name")}
    _put(postgres, "plan", pg.get("plan"))
    _put(postgres, "version", None if pg.get("version") is None else str(pg["version"]))
    _put(postgres, "databaseName", pg.get("databaseName"))
    _put(postgres, "databaseUser", pg.get("databaseUser"))
    _put(postgres, "diskSizeGb", pg.get("diskSizeGB"))
    _put(postgres, "highAvailability", pg.get("highAvailabilityEnabled"))
    postgres["importId"] = pg.get("id")
    key_value: dict[str, Any] = {"name": kv.get("name")}
    _put(key_value, "plan", kv.get("plan"))
    options = kv.get("options") or {}
    _put(key_value, "maxmemoryPolicy", options.get("maxmemoryPolicy"))
    key_value["importId"] = kv.get("id")
    return {
        "ownerId": owners[f"service {service.get('name')}"],
        "region": regions[f"service {service.get('name')}"],
        "api": api,
        "postgres": postgres,
        "keyValue": key_value,
    }


def _current(settings: Settings, section: str | None, key: str) -> Any:
    if section is None:
        return settings.model_dump(by_alias=True)[key]
    model = {"api": settings.api, "postgres": settings.postgres, "keyValue": settings.key_value}
    current = model[section].model_dump(by_alias=True)[key]
    if key == "importIds":
        return {k: v for k, v in current.items() if k == 1}
    return current


def _show(value: Any) -> str:
    if value is None or value == {}:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" else value
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def differences(settings: Settings, values: Mapping[str, Any]) -> list[str]:
    """One `koinonia:<path>: stack file X, live Y` line per field that differs."""
    lines = []
    for key in ("ownerId", "region"):
        if _current(settings, None, key) != values[key]:
            lines.append(
                f"{NAMESPACE}:{key}: stack file {_show(_current(settings, None, key))}, "
                f"live {_show(values[key])}"
            )
    for section in SECTIONS:
        for key, live in values[section].items():
            have = _current(settings, section, key)
            if have != live:
                lines.append(
                    f"{NAMESPACE}:{section}.{key}: stack file {_show(have)}, live {_show(live)}"
                )
    return lines


# ------------------------------------------------------------------------------------------
# The stack-file edit (round trip: comments, order and quoting kept)
# ------------------------------------------------------------------------------------------


def apply_values(text: str, values: Mapping[str, Any], *, source: str) -> str:
    """`text` with `values` written in; validated as the CLI validates a stack file."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    load_yaml_strict(text, source=source)
    yaml = _yaml(text)
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if doc is None:
        doc = CommentedMap()
    config = doc.get("config") if isinstance(doc, dict) else None
    if config is None:
        config = doc["config"] = CommentedMap()
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: 'config' must be a mapping of namespace:key to value")
    for key in ("ownerId", "region"):
        config[f"{NAMESPACE}:{key}"] = values[key]
    for section in SECTIONS:
        full = f"{NAMESPACE}:{section}"
        target = config.get(full)
        if target is None:
            target = config[full] = CommentedMap()
        if not isinstance(target, dict):
            raise ConfigError(f"{source}: {full}: expected a mapping of settings")
        for key, value in values[section].items():
            if key == "importIds":
                ids = target.get("importIds")
                if not isinstance(ids, dict):
                    ids = target["importIds"] = CommentedMap()
                for number, ident in value.items():
                    for stale in [k for k in ids if str(k) == str(number)]:
                        del ids[stale]
                    ids[number] = ident
            else:
                target[key] = value
    instances = target_instances(config)
    if instances is not None and 1 not in instances:
        raise UsageError(
            f"{source}: {NAMESPACE}:api.instances does not declare instance 1; the live service "
            "is adopted as instance 1 (add 1 to the list)"
        )
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    new_text = buffer.getvalue()
    settings_of_text(new_text, source=source)
    return new_text


def target_instances(config: Mapping[str, Any]) -> list[Any] | None:
    api = config.get(f"{NAMESPACE}:api")
    instances = api.get("instances") if isinstance(api, dict) else None
    return list(instances) if isinstance(instances, list) else None


def text_diff(old: str, new: str, *, source: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            source,
            source + " (adopted)",
        )
    )


# ------------------------------------------------------------------------------------------
# Env vars: keys only
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvReport:
    live_keys: list[str]
    # Live keys that look secret (settings.looks_secret) and that the program does not set.
    secret_looking: list[str]
    # Live keys the stack declares nowhere: the env resource owns the whole set and would drop
    # them (pulumi-render's EnvVarsForService PUTs the complete list, PUT /services/{id}/env-vars).
    undeclared: list[str]
    # `pulumi config set --secret` commands, one per key of api.secretEnv and per undeclared
    # secret-looking key; without a value the CLI prompts for it without echo, or reads stdin
    # (pulumi/pulumi pkg/cmd/pulumi/config/config.go, "If a value is not present on the command
    # line, pulumi will prompt for the value"): never in argv, never in `ps`.
    commands: list[str] = field(default_factory=list)


def env_report(settings: Settings, env_keys: list[str], *, stack: str) -> EnvReport:
    api = settings.api
    declared = set(api.env) | set(api.secret_env) | set(RESERVED_ENV)
    secret_looking = [k for k in env_keys if looks_secret(k) and k not in RESERVED_ENV]
    undeclared = [k for k in env_keys if k not in declared]
    wanted = [*api.secret_env, *(k for k in secret_looking if k not in api.secret_env)]
    commands = [f"pulumi config set --secret {NAMESPACE}:{k} --stack {stack}" for k in wanted]
    return EnvReport(
        live_keys=list(env_keys),
        secret_looking=secret_looking,
        undeclared=undeclared,
        commands=commands,
    )


# ------------------------------------------------------------------------------------------
# What the engine would do with the adopted stack
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    logical_name: str
    type: str
    op: str  # "import" | "create"
    import_id: str | None = None
    diff: ImportDiff | None = None

    def describe(self) -> str:
        if self.op == "create":
            return f"create {self.logical_name}"
        assert self.diff is not None
        if self.diff.no_change:
            return f"import {self.logical_name} ({self.import_id}): no change"
        op = "REPLACE" if self.diff.replaces else "update"
        return (
            f"import {self.logical_name} ({self.import_id}) then {op}: "
            f"{', '.join(self.diff.fields)} differ"
        )


LIVE_OF_TYPE: dict[str, Callable[[Live], dict[str, Any]]] = {
    WEB_SERVICE: lambda live: live.service,
    POSTGRES: lambda live: live.postgres,
    KEY_VALUE: lambda live: live.key_value,
}


def adoption_steps(settings: Settings, live: Live, *, stack: str) -> list[Step]:
    """The program evaluated under Pulumi's mocks (as `plan` does), each imported resource's
    inputs compared with what the provider reads back from the live GET answer."""
    from koinonia_infra.program.mocks import evaluate

    evaluation = evaluate(settings, stack=stack)
    live_ids = {
        str(live.service.get("id")): WEB_SERVICE,
        str(live.postgres.get("id")): POSTGRES,
        str(live.key_value.get("id")): KEY_VALUE,
    }
    steps = []
    for res in evaluation.resources:
        if res.type not in LIVE_OF_TYPE:
            continue
        if res.import_id is None:
            steps.append(Step(res.logical_name, res.type, "create"))
            continue
        if live_ids.get(res.import_id) != res.type:
            steps.append(Step(res.logical_name, res.type, "import", res.import_id, None))
            continue
        diff = import_diff(res.type, LIVE_OF_TYPE[res.type](live), res.inputs, res.ignore_changes)
        steps.append(Step(res.logical_name, res.type, "import", res.import_id, diff))
    return steps


def unsafe_steps(steps: list[Step]) -> list[str]:
    """Imports that would not be a no-op, or whose id is not one adopt found."""
    problems = []
    for step in steps:
        if step.op != "import":
            continue
        if step.diff is None:
            problems.append(
                f"{step.logical_name}: import id {step.import_id} is not the live resource "
                "adopt found"
            )
        elif not step.diff.no_change:
            problems.append(step.describe())
    return problems


# ------------------------------------------------------------------------------------------
# The command's two entry points
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adoption:
    path: Path
    old_text: str
    new_text: str
    env: EnvReport
    steps: list[Step]

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text

    @property
    def diff(self) -> str:
        return text_diff(self.old_text, self.new_text, source=self.path.name)


def prepare(
    stack: str,
    api: LiveApi,
    *,
    project_dir: Path | None = None,
    service: str | None = None,
    postgres: str | None = None,
    key_value: str | None = None,
) -> Adoption:
    """Everything `adopt` shows before it asks; nothing is written."""
    from koinonia_infra.project import stack_path

    path = stack_path(stack, project_dir)
    text = read_stack_text(path)
    live = find_live(
        api,
        _names_of_text(
            text, source=str(path), service=service, postgres=postgres, key_value=key_value
        ),
    )
    new_text = apply_values(text, stack_values(live), source=str(path))
    adopted = settings_of_text(new_text, source=str(path))
    return Adoption(
        path=path,
        old_text=text,
        new_text=new_text,
        env=env_report(adopted, live.env_keys, stack=stack),
        steps=adoption_steps(adopted, live, stack=stack),
    )


def write(adoption: Adoption) -> None:
    """Replace the stack file in one step (a crash leaves the old or the new file, never half)."""
    tmp = adoption.path.with_name(adoption.path.name + ".adopt-tmp")
    try:
        tmp.write_text(adoption.new_text, encoding="utf-8")
        with contextlib.suppress(OSError):
            tmp.chmod(adoption.path.stat().st_mode & 0o777)
        os.replace(tmp, adoption.path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{adoption.path}: cannot write the stack file: {exc}") from None


def check(
    stack: str,
    api: LiveApi,
    *,
    project_dir: Path | None = None,
    service: str | None = None,
    postgres: str | None = None,
    key_value: str | None = None,
) -> list[str]:
    """Field-by-field differences between the stack file and the live resources (empty: match)."""
    from koinonia_infra.project import stack_path

    path = stack_path(stack, project_dir)
    settings = settings_of_text(read_stack_text(path), source=str(path))
    live = find_live(
        api, Names.of(settings, service=service, postgres=postgres, key_value=key_value)
    )
    return differences(settings, stack_values(live))
