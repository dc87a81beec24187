"""The Pulumi engine's own checks of `Pulumi.yaml` and a stack file, applied before the engine runs.

The engine refuses a stack before it runs the program when a config key declared in Pulumi.yaml
is missing from the stack, or has the wrong type. The rules here follow the engine's source
(pulumi/pulumi):

- `sdk/go/common/workspace/project.go`:
  - `RewriteShorthandConfigValues`: a bare value declared under a project-namespaced key is that
    key's `default` (for another namespace, its `value`).
  - `Project.Validate`: `default` and `value` together are an error; an `array` needs `items`; a
    typed default must have its type; a key of another namespace takes neither a type nor a
    default, and needs a `value`.
  - `ValidateConfigValue`: string, integer (an int, a whole float or a string of an int), boolean
    (a bool, or the strings "true"/"false"), object (a mapping), array (items checked one by one).
- `pkg/workspace/config.go`, `mergeConfig`: a key namespaced by the project, declared with no
  `default` and no `value`, that the stack does not set is "missing"; every explicitly typed key
  that the stack sets is checked against its type.

A stack value that is not a mapping or a list reaches the engine as a string (`config.Value`),
so `5` or `true` in a stack file are the strings "5" and "true" there; mappings and lists are
object values, decoded from JSON before the type check.

`plan`, `preview` and `up` call `check_stack` so the same mistake is caught offline, with the
engine's own wording, before any credentials are needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from koinonia_infra.errors import ConfigError

PROJECT_FILE = "Pulumi.yaml"
_SIMPLE_TYPES = ("string", "integer", "boolean", "array", "object")


def _namespaced_by_project(project: str, key: str) -> bool:
    return ":" not in key or key.startswith(project + ":")


def _qualified(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _declarations(project_doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Pulumi.yaml's `config:` after the engine's shorthand rewrite."""
    name = str(project_doc.get("name", ""))
    raw = project_doc.get("config") or {}
    if not isinstance(raw, Mapping):
        # A string here is the deprecated stack config directory, not declarations.
        return {}
    declared: dict[str, dict[str, Any]] = {}
    for raw_key, value in raw.items():
        key = str(raw_key)
        if isinstance(value, Mapping):
            declared[key] = dict(value)
        elif _namespaced_by_project(name, key):
            declared[key] = {"default": value}
        else:
            declared[key] = {"value": value}
    return declared


def _full_type_name(type_name: str, items: Mapping[str, Any] | None) -> str:
    if items is not None:
        inner = items.get("type", "")
        return f"array<{_full_type_name(str(inner), items.get('items'))}>"
    return type_name


def value_has_type(type_name: str, items: Mapping[str, Any] | None, value: Any) -> bool:
    """`ValidateConfigValue` of the engine, on a value decoded as the engine decodes it."""
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return math.isfinite(value) and value == math.trunc(value)
        if isinstance(value, str):
            # Go's strconv.Atoi: an optional sign, then decimal digits; nothing else.
            digits = value[1:] if value[:1] in ("+", "-") else value
            return digits.isascii() and digits.isdigit()
        return False
    if type_name == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if type_name == "object":
        return isinstance(value, Mapping)
    if not isinstance(value, list) or items is None:
        return False
    return all(
        value_has_type(str(items.get("type", "")), items.get("items"), item) for item in value
    )


def project_problems(project_doc: Mapping[str, Any]) -> list[str]:
    """What the engine's `Project.Validate` says about Pulumi.yaml's config declarations."""
    name = str(project_doc.get("name", ""))
    if not name:
        return ["project is missing a 'name' attribute"]
    problems: list[str] = []
    for key, decl in sorted(_declarations(project_doc).items()):
        type_name = decl.get("type")
        has_default, has_value = decl.get("default") is not None, decl.get("value") is not None
        if has_default and has_value:
            problems.append(f"project config '{key}' cannot have both a 'default' and 'value'")
        if type_name is not None and type_name not in _SIMPLE_TYPES:
            problems.append(f"project config '{key}': unknown type {type_name!r}")
            continue
        if _namespaced_by_project(name, key):
            if type_name == "array" and decl.get("items") is None:
                problems.append(
                    f"the configuration key '{key}' declares an array but does not specify "
                    "the underlying type via the 'items' attribute"
                )
            elif (
                type_name is not None
                and has_default
                and not value_has_type(type_name, decl.get("items"), decl["default"])
            ):
                problems.append(
                    f"the default value specified for configuration key '{key}' is not of the "
                    f"expected type '{_full_type_name(type_name, decl.get('items'))}'"
                )
        elif type_name is not None:
            problems.append(f"configuration key '{key}' is not namespaced by the project and "
                            "should not define a type")  # fmt: skip
        elif has_default:
            problems.append(f"configuration key '{key}' is not namespaced by the project and "
                            "should not define a default value")  # fmt: skip
        elif not has_value:
            problems.append(f"configuration key '{key}' is namespaced and must provide a 'value'")
    return problems


def _is_secure(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"secure"}


def _as_engine_value(value: Any) -> Any:
    """A stack file's value as the engine sees it: scalars are strings, the rest JSON objects."""
    if isinstance(value, Mapping | list):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def stack_problems(
    project_doc: Mapping[str, Any], stack_doc: Mapping[str, Any], stack: str
) -> list[str]:
    """What `mergeConfig` says about a stack's config against the project's declarations."""
    name = str(project_doc.get("name", ""))
    raw_config = stack_doc.get("config") or {}
    config = (
        {_qualified(name, str(k)): v for k, v in raw_config.items()}
        if isinstance(raw_config, Mapping)
        else {}
    )
    missing: list[str] = []
    problems: list[str] = []
    for key, decl in sorted(_declarations(project_doc).items()):
        qualified = _qualified(name, key)
        has_default = decl.get("default") is not None or decl.get("value") is not None
        if qualified not in config:
            if not has_default and _namespaced_by_project(name, key):
                missing.append(key)
            continue
        type_name = decl.get("type")
        value = config[qualified]
        if type_name is None or _is_secure(value):
            # Secure values are checked by the engine after decryption; we cannot decrypt here.
            continue
        if decl.get("secret") and not _is_secure(value):
            problems.append(
                f"Stack '{stack}' with configuration key '{key}' must be encrypted as it's secret"
            )
            continue
        if not value_has_type(str(type_name), decl.get("items"), _as_engine_value(value)):
            full = _full_type_name(str(type_name), decl.get("items"))
            problems.append(
                f"Stack '{stack}' with configuration key '{key}' must be of type '{full}'"
            )
    if missing:
        plural = "values" if len(missing) > 1 else "value"
        names = ", ".join(f"'{k}'" for k in missing)
        problems.insert(0, f"Stack '{stack}' is missing configuration {plural} {names}")
    return problems


def _load(path: Path) -> Mapping[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping")
    return doc


def check_stack(stack_file: Path) -> None:
    """Raise ConfigError, in the engine's words, when the engine would refuse this stack file.

    Pulumi.yaml is the one beside the stack file (the project's default stack config directory).
    """
    project_file = stack_file.parent / PROJECT_FILE
    if not (project_file.is_file() and stack_file.is_file()):
        # Nothing to compare; whoever reads the missing file says so in its own context.
        return
    project_doc = _load(project_file)
    problems = project_problems(project_doc)
    if problems:
        raise ConfigError(f"{project_file}: {problems[0]}")
    stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    problems = stack_problems(project_doc, _load(stack_file), stack)
    if problems:
        raise ConfigError(
            f"{stack_file}: {problems[0]} (declared in {PROJECT_FILE}; the Pulumi engine "
            "refuses the stack before running the program)"
        )
