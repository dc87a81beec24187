"""The deployment descriptor: what `verify`, `status`, the drills and `rollout` consume, whatever
produced it (stack outputs, a `pulumi stack output --json` file, or the sandbox).

JSON shape (camelCase, stable):

    {"stack": "prod", "environment": "production", "region": "oregon",
     "edgeUrl": "https://koinonia-edge.onrender.com",
     "edge": {"name": "koinonia-edge", "serviceId": "srv-…"},          # optional
     "instances": [{"number": 1, "name": "koinonia-sms-backend", "serviceId": "srv-…",
                    "url": "https://….onrender.com",
                    "privateAddress": "koinonia-sms-backend-ab12:8080"}],
     "postgresId": "dpg-…", "keyValueId": "red-…",
     "renderApiUrl": "https://api.render.com/v1"}                       # optional

The Render API key is never part of the descriptor's public form. The sandbox alone stores its
control plane's token in its own state dir (mode 0600), as `renderApiKey`; `public_dict()` drops it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from koinonia_infra.errors import UsageError
from koinonia_infra.files import write_atomic
from koinonia_infra.textsafe import has_control, inert

DEFAULT_RENDER_API_URL = "https://api.render.com/v1"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    @field_validator("*")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        # Names, ids and URLs are identifiers: a control character in one (an escape sequence
        # that clears a terminal, a newline that adds a line to a sign-off) is hostile or broken
        # input, refused where it enters. Output escapes it anyway (textsafe).
        if isinstance(value, str) and has_control(value):
            raise ValueError(f"control characters are not allowed: {inert(value)[:80]}")
        return value


class InstanceRef(_Model):
    number: int = Field(ge=1)
    name: str
    service_id: str
    url: str
    private_address: str


class EdgeRef(_Model):
    name: str
    service_id: str | None = None


class Descriptor(_Model):
    stack: str | None = None
    environment: str = "production"
    region: str | None = None
    edge_url: str
    edge: EdgeRef | None = None
    instances: list[InstanceRef]
    postgres_id: str | None = None
    key_value_id: str | None = None
    render_api_url: str | None = None
    render_api_key: SecretStr | None = Field(default=None, exclude=True)
    # The sandbox's timing profile ("fast" | "render", koinonia_infra/sandbox/timing.py); absent
    # for a real deployment, whose timings are Render's.
    sandbox_timing: str | None = None

    @model_validator(mode="after")
    def _unique(self) -> Descriptor:
        if not self.instances:
            raise ValueError("instances: empty; at least one instance is needed")
        numbers = [i.number for i in self.instances]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"instances: duplicate instance numbers {sorted(numbers)}")
        return self

    def instance(self, number: int) -> InstanceRef:
        for inst in self.instances:
            if inst.number == number:
                return inst
        declared = ", ".join(str(i.number) for i in self.instances)
        raise UsageError(f"instance {number} is not in the deployment (declared: {declared})")

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def write(self, path: Path, *, include_key: bool = False) -> None:
        data = self.public_dict()
        if include_key and self.render_api_key is not None:
            data["renderApiKey"] = self.render_api_key.get_secret_value()
        # Atomic, mode 0600 from the start (it may hold the sandbox's token); a full disk leaves
        # no partial descriptor and names the path (koinonia_infra/files.py).
        write_atomic(path, json.dumps(data, indent=2) + "\n", mode=0o600)


def _unwrap_stack_outputs(data: dict[str, Any]) -> dict[str, Any]:
    """Accept `pulumi stack output --json` files too: secret outputs arrive as
    `{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": …}`
    or as the string "[secret]"; only `value` is kept."""
    sig = "4dabf18193072939515e22adb298388d"
    return {
        k: (v["value"] if isinstance(v, dict) and sig in v and "value" in v else v)
        for k, v in data.items()
    }


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python's json keeps the last of two equal keys, silently; like the stack file's reader
    # (settings.load_yaml_strict), a repeated key is an error: which one counts is not a guess.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(inert(key)[:80])
        result[key] = value
    return result


def parse_descriptor(data: Any, *, source: str) -> Descriptor:
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a JSON object with edgeUrl and instances")
    try:
        return Descriptor.model_validate(_unwrap_stack_outputs(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(root)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = first["msg"].removeprefix("Value error, ")
        raise UsageError(f"{source}: {loc}: {msg}{more}") from None


def load_descriptor(path: Path) -> Descriptor:
    """Read a descriptor or outputs JSON file; any problem is a UsageError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: outputs file not found") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > 10_000_000:
        raise UsageError(f"{path}: too large for a deployment descriptor")
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except _DuplicateKey as exc:
        raise UsageError(f"{path}: not valid JSON: key {exc.args[0]!r} given twice") from None
    except RecursionError:
        raise UsageError(f"{path}: not valid JSON: nested too deeply") from None
    return parse_descriptor(data, source=str(path))
