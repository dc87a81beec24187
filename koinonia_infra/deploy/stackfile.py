"""Round-trip edits of `Pulumi.<stack>.yaml`: comments, key order, flow/block style and quoting
survive, so the diff a reviewer sees is exactly the change."""

from __future__ import annotations

import io
from typing import Any

from koinonia_infra.errors import ConfigError
from koinonia_infra.settings import (
    NAMESPACE,
    Settings,
    load_yaml_strict,
    settings_from_config,
    stack_config_of_text,
)

API_KEY = f"{NAMESPACE}:api"


def _indentation(text: str) -> tuple[int, int]:
    """(sequence, offset) of the file's block sequences, so a dump keeps its style.

    ruamel's own guess (ruamel.yaml 0.19, ruamel/yaml/util.py `load_yaml_guess_indent`) reads
    the first block sequence relative to the last line that ends in `key:`; a key followed by a
    comment (`secretEnv:  # encrypted`) does not end in `:` for it, so such comments are left
    out of the text it guesses from. Without a block sequence it has no sequence style to
    report, and ruamel's defaults (2, 0) apply.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.util import load_yaml_guess_indent

    lines = []
    for line in text.splitlines():
        head, hash_sign, _comment = line.partition(" #")
        lines.append(head.rstrip() if hash_sign and head.rstrip().endswith(":") else line)
    # The guess loads its text: when cutting at ` #` broke a quoted `key: "a: #b"`, the file
    # as written is guessed from instead (a broken file is reported by the caller's load).
    for candidate in ("\n".join(lines), text):
        try:
            _doc, indent, offset = load_yaml_guess_indent(candidate, yaml=YAML(typ="safe"))
        except YAMLError:
            continue
        if offset is None or indent is None:  # no block sequence: `indent` is the mappings'
            return 2, 0
        return indent, offset
    return 2, 0


def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    sequence, offset = _indentation(text)
    yaml.indent(mapping=2, sequence=sequence, offset=offset)
    return yaml


def remove_instance(text: str, number: int, *, source: str = "stack file") -> str:
    """`text` with `number` removed from api.instances (and from api.importIds)."""
    from ruamel.yaml.error import YAMLError

    # The strict reader first: duplicate keys and hostile nesting are refused with the same one
    # line `plan` gives, before ruamel (which raises its own, multi-line errors) sees the text.
    load_yaml_strict(text, source=source)
    yaml = _yaml(text)
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    config = doc.get("config") if isinstance(doc, dict) else None
    api = config.get(API_KEY) if isinstance(config, dict) else None
    if not isinstance(api, dict):
        raise ConfigError(f"{source}: {API_KEY}: missing")
    instances = api.get("instances")
    if not isinstance(instances, list):
        raise ConfigError(f"{source}: {API_KEY}.instances: not an explicit list of instances")
    if number not in instances:
        raise ConfigError(f"{source}: {API_KEY}.instances: {number} is not declared")
    del instances[instances.index(number)]
    import_ids = api.get("importIds")
    if isinstance(import_ids, dict):
        for key in [k for k in import_ids if str(k) == str(number)]:
            del import_ids[key]
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    return buffer.getvalue()


def settings_of_text(text: str, *, source: str) -> Settings:
    """Validate edited stack-file text exactly as the CLI validates the file itself."""
    return settings_from_config(stack_config_of_text(text, source=source), source=source)
