"""Evaluate the real program in-process under Pulumi's mock runtime: no CLI, no credentials,
no network. `plan` and the program's tests share this harness.

What the program registers is read from the wire requests a `MockMonitor` subclass receives, so
resource options (protect, retain_on_delete, import) and secretness are recorded exactly as the
engine would see them. Mocks return ids and the outputs the program reads (slug, url, connection
strings), and the stack outputs are resolved through a callback that must have run: a value the
mock never produced fails the evaluation instead of silently passing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format  # type: ignore[import-untyped]
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.settings import get_root_resource, set_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from koinonia_infra.errors import OperationFailed
from koinonia_infra.settings import NAMESPACE, Settings

PROJECT = "koinonia"
# Wire encodings of the Pulumi protocol (pulumi.runtime.rpc): a secret is
# {SIG_KEY: SECRET_SIG, "value": v}; an unknown value (known only after deploy) is UNKNOWN.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

# Prefix of every connection string the mocks hand out; lets `plan` tell which datastore a
# (secret) env value came from without a second description of the wiring.
MOCK_CONNECTION = "mock-connection://"
ID_PREFIX = {
    "render:services:WebService": "srv",
    "render:postgres:Postgres": "dpg",
    "render:key-value:KeyValue": "red",
    "render:services:EnvVarsForService": "env",
}


@dataclass(frozen=True)
class Secret:
    """A registered input value that travelled as a secret."""

    value: Any


@dataclass(frozen=True)
class Registration:
    type: str
    logical_name: str
    inputs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    import_id: str | None
    ignore_changes: tuple[str, ...]
    id: str
    additional_secret_outputs: tuple[str, ...] = ()

    @property
    def render_name(self) -> str | None:
        name = self.inputs.get("name")
        return name if isinstance(name, str) else None


@dataclass
class Evaluation:
    stack: str
    resources: list[Registration]
    outputs: dict[str, Any]
    invokes: list[str] = field(default_factory=list)

    def by_name(self, logical_name: str) -> Registration:
        for res in self.resources:
            if res.logical_name == logical_name:
                return res
        raise KeyError(logical_name)


def decode(value: Any) -> Any:
    """Wire value → Python: secrets become `Secret`, integral floats ints (protobuf has only
    doubles), unknowns stay the UNKNOWN marker. Keys are sorted: the wire's map order is the
    protobuf library's, and `plan --format json` must be stable."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return Secret(decode(value.get("value")))
        return {k: decode(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def unknown_paths(value: Any, path: str = "") -> list[str]:
    """Where a decoded value still holds the UNKNOWN marker (an output that never resolved)."""
    if isinstance(value, Secret):
        return unknown_paths(value.value, path)
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in unknown_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in unknown_paths(v, f"{path}[{i}]")]
    return [path or "(value)"] if value == UNKNOWN else []


def redact(value: Any, marker: str = "[secret]") -> Any:
    if isinstance(value, Secret):
        return marker
    if isinstance(value, dict):
        return {k: redact(v, marker) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, marker) for v in value]
    return value


def reveal(value: Any) -> Any:
    """The plain value with secrets unwrapped (for tests and internal attribution only)."""
    if isinstance(value, Secret):
        return reveal(value.value)
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


class RenderMocks(pulumi_mocks.Mocks):
    """Ids for every resource, plus the provider outputs the program reads."""

    def __init__(self) -> None:
        self._logical_by_id: dict[str, str] = {}
        self._lock = threading.Lock()

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        prefix = ID_PREFIX.get(args.typ, "res")
        # An adopted resource keeps its real id; a new one gets a placeholder nobody could
        # mistake for a Render id.
        id_ = args.resource_id or f"{prefix}-new-{args.name}"
        with self._lock:
            self._logical_by_id[id_] = args.name
        state = dict(args.inputs)
        if args.typ == "render:services:WebService":
            name = str(args.inputs.get("name", args.name))
            state["slug"] = name
            details = dict(state.get("serviceDetails") or {})
            details["url"] = f"https://{name}.onrender.com"
            state["serviceDetails"] = details
        return id_, state

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        kind = args.token.rsplit(":", 1)[-1]
        if kind == "getPostgresConnectionInfo":
            owner = self._owner(args.args.get("postgresId"))
            return self._connection(f"postgres/{owner}")
        if kind == "getKeyValueConnectionInfo":
            owner = self._owner(args.args.get("keyValueId"))
            return self._connection(f"key-value/{owner}")
        raise OperationFailed(f"the program called {args.token}, which the mocks do not know")

    def _owner(self, id_: Any) -> str:
        with self._lock:
            return self._logical_by_id.get(str(id_), f"unknown-id-{id_}")

    @staticmethod
    def _connection(what: str) -> dict[str, Any]:
        return {
            "internalConnectionString": f"{MOCK_CONNECTION}{what}/internal",
            "externalConnectionString": f"{MOCK_CONNECTION}{what}/external",
            "password": "mock-password",
            "psqlCommand": "psql",
            "cliCommand": "redis-cli",
        }


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Records what the engine would receive: inputs (with secretness) and resource options."""

    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}
        self.invokes: list[str] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = decode(json_format.MessageToDict(request.object))
        registration = Registration(
            type=request.type,
            logical_name=request.name,
            inputs=inputs,
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            import_id=request.importId or None,
            ignore_changes=tuple(request.ignoreChanges),
            id=response.id,
            additional_secret_outputs=tuple(request.additionalSecretOutputs),
        )
        with self._lock:
            if request.name in self.registrations:
                raise OperationFailed(f"two resources named {request.name!r}")
            self.registrations[request.name] = registration
        return response

    def Invoke(self, request: Any) -> Any:
        with self._lock:
            self.invokes.append(request.tok)
        return super().Invoke(request)  # type: ignore[no-untyped-call]


def config_for(settings: Settings, secret_values: Mapping[str, str]) -> dict[str, str]:
    """The engine's view of a stack's config: structured values as JSON text, like Pulumi."""
    data = settings.model_dump(mode="json", by_alias=True, exclude_none=True)
    config = {
        f"{NAMESPACE}:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in data.items()
    }
    for key, value in secret_values.items():
        config[f"{NAMESPACE}:{key}"] = value
    return config


def evaluate(
    settings: Settings,
    *,
    stack: str = "prod",
    secret_values: Mapping[str, str] | None = None,
    program: Callable[[], None] | None = None,
) -> Evaluation:
    """Run the program for `settings` under mocks; return what it registered and exported.

    `secret_values` are the plaintext values of `api.secretEnv` keys (missing keys get a
    placeholder so the program can run; `plan` warns about them). `program` defaults to the real
    entry point: settings read back from `pulumi.Config`, then `build()`.
    """
    from koinonia_infra.program import build, settings_from_pulumi_config

    secrets = dict.fromkeys(settings.api.secret_env, "[unset]")
    secrets.update(secret_values or {})
    config = config_for(settings, secrets)

    def default_program() -> None:
        build(settings_from_pulumi_config())

    run_program = program or default_program
    captured: dict[str, Any] = {}
    resolved = threading.Event()

    def capture(values: dict[str, Any]) -> None:
        captured.update(values)
        resolved.set()

    def main() -> None:
        run_program()
        root = get_root_resource()
        exported: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
        pulumi.Output.from_input(exported).apply(capture)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = RenderMocks()
    monitor = RecordingMonitor(mocks)
    try:
        set_root_resource(None)  # type: ignore[arg-type]  # a fresh Stack per evaluation
        pulumi.runtime.set_all_config(config, secret_keys=[f"{NAMESPACE}:{k}" for k in secrets])
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor
        )
        _sync_await(run_pulumi_func(main))
    finally:
        set_root_resource(None)  # type: ignore[arg-type]
        pulumi.runtime.set_all_config({}, secret_keys=[])
        # The mock monitor runs in executor threads that each create an event loop; ending
        # the threads now lets those loops be collected cleanly instead of at interpreter exit.
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()
    if not resolved.is_set():
        raise OperationFailed("the program's stack outputs never resolved under mocks")
    resources = sorted(monitor.registrations.values(), key=lambda r: (r.type, r.logical_name))
    unresolved = [
        f"{res.logical_name}.{path}" for res in resources for path in unknown_paths(res.inputs)
    ]
    if unresolved:
        # With preview=False every value must be known; an unknown one would be compared (and
        # shown by `plan`) as a marker string, so tests comparing inputs would pass vacuously.
        raise OperationFailed(f"inputs never resolved under mocks: {', '.join(unresolved)}")
    return Evaluation(stack=stack, resources=resources, outputs=captured, invokes=monitor.invokes)
