"""Validated settings: one model for the Pulumi program (from `pulumi.Config`) and the CLI
(from `Pulumi.<stack>.yaml`, read directly, no engine).

Keys are camelCase as in the stack file (`koinonia:api: {healthCheckPath: /health}`); Python code
uses snake_case attributes. Every problem becomes one `koinonia:<dotted.path>: <message>` line of a
`ConfigError`.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from koinonia_infra.errors import ConfigError
from koinonia_infra.textsafe import inert

NAMESPACE = "koinonia"

# Values accepted by pulumi-render 0.6 (its generated enums); checked by tests/test_settings.py
# against the installed provider so a provider upgrade that drops one fails loudly.
Region = Literal["oregon", "ohio", "virginia", "frankfurt", "singapore"]
WebPlan = Literal["starter", "standard", "pro", "pro_plus", "pro_max", "pro_ultra"]
Runtime = Literal["node", "docker", "elixir", "go", "python", "ruby", "rust", "image"]
PostgresPlan = Literal[
    "basic_256mb", "basic_1gb", "basic_4gb",
    "pro_4gb", "pro_8gb", "pro_16gb", "pro_32gb", "pro_64gb", "pro_128gb", "pro_192gb",
    "pro_256gb", "pro_384gb", "pro_512gb",
    "accelerated_16gb", "accelerated_32gb", "accelerated_64gb", "accelerated_128gb",
    "accelerated_256gb", "accelerated_384gb", "accelerated_512gb", "accelerated_768gb",
    "accelerated_1024gb",
    # Legacy plans Render still accepts for existing databases (adoption via importId).
    "starter", "standard", "pro", "pro_plus",
]  # fmt: skip
PostgresVersion = Literal["11", "12", "13", "14", "15", "16", "17"]
KeyValuePlan = Literal["starter", "standard", "pro", "pro_plus"]
MaxmemoryPolicy = Literal[
    "noeviction", "allkeys_lfu", "allkeys_lru", "allkeys_random",
    "volatile_lfu", "volatile_lru", "volatile_random", "volatile_ttl",
]  # fmt: skip

# Env keys whose values must never sit in plaintext in a stack file.
SECRET_KEY_PATTERNS = ("*KEY*", "*SECRET*", "*TOKEN*", "*PASSWORD*", "DATABASE_URL", "REDIS_URL")
# Set by the program itself; a user value would be silently overridden, so it is refused.
RESERVED_ENV = ("DATABASE_URL", "REDIS_URL", "PORT", "NODE_ENV", "KOINONIA_INSTANCE")
RENDER_PUBLIC_PORT = 10000
# Instance numbers run 1..MAX_INSTANCE. Each is a paid Render web service; the bound keeps a
# typo (`20` for `2`, or 99999999999999999999) from planning a fleet, keeps `plan` fast, and
# keeps `<api.name>-<k>` within the 61-character names this tool accepts plus 4 characters.
MAX_INSTANCE = 100
# Stack files are a few hundred lines deep at most; anything deeper is hostile or broken, and
# PyYAML's recursive composer would otherwise end in a RecursionError traceback.
MAX_YAML_DEPTH = 32
MAX_STACK_FILE_BYTES = 1_000_000
MAX_PROBLEM_LINES = 20
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEALTH_PATH = re.compile(r"/[^\s{}\"'#]*")


def looks_secret(key: str) -> bool:
    upper = key.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_KEY_PATTERNS)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class ApiSettings(_Model):
    name: str = "koinonia-sms-backend"
    # Strict: YAML's `true` is not instance 1.
    instances: list[StrictInt] = Field(default_factory=lambda: [1, 2])
    plan: WebPlan = "standard"
    runtime: Runtime = "node"
    repo: str = "https://github.com/koinonia/koinonia-sms-backend"
    branch: str = "main"
    auto_deploy: bool = True
    root_dir: str | None = None
    build_command: str = "npm ci"
    start_command: str = "npm start"
    pre_deploy_command: str | None = None
    health_check_path: str = "/health"
    port: int = 8080
    node_env: str = "production"
    max_shutdown_delay_seconds: int = Field(default=30, ge=1, le=300)
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: list[str] = Field(default_factory=list)
    import_ids: dict[int, str] = Field(default_factory=dict)

    @field_validator("instances")
    @classmethod
    def _instances(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("at least one instance is required, e.g. [1, 2]")
        if any(n < 1 for n in value):
            raise ValueError("instance numbers start at 1")
        if any(n > MAX_INSTANCE for n in value):
            raise ValueError(f"instance numbers run from 1 to {MAX_INSTANCE}")
        dupes = sorted({n for n in value if value.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate instance number(s) {dupes}")
        return value

    @field_validator("import_ids", mode="before")
    @classmethod
    def _import_keys(cls, value: Any) -> Any:
        # Keys are ints in a stack file and strings in the engine's JSON config; never booleans.
        if isinstance(value, Mapping) and any(isinstance(k, bool) for k in value):
            raise ValueError("keys are instance numbers, e.g. {1: srv-…}")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if value == RENDER_PUBLIC_PORT:
            raise ValueError(
                "port 10000 is reserved by Render for public traffic and refused for private "
                "traffic; the edge reaches instances privately (use 8080)"
            )
        if not 1 <= value <= 65535:
            raise ValueError("must be a TCP port (1-65535)")
        return value

    @field_validator("health_check_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        if not HEALTH_PATH.fullmatch(value):
            # It is written into the edge's Caddyfile: no spaces, quotes or braces.
            raise ValueError("must be a plain URL path without spaces, quotes or braces")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_numbers(cls, value: Any) -> Any:
        # YAML reads `WORKERS: 4` as a number; every environment value is text.
        if isinstance(value, Mapping):
            return {
                k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()
            }
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,60}", value):
            raise ValueError("use lowercase letters, digits and '-'")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ENV_KEY.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key in RESERVED_ENV:
                raise ValueError(f"{key} is set by koinonia-infra itself; remove it from env")
            if looks_secret(key):
                raise ValueError(
                    f"{key} looks secret and must not be a plaintext value: list it in "
                    f"api.secretEnv and run `pulumi config set --secret {NAMESPACE}:{key}`"
                )
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: list[str]) -> list[str]:
        for key in value:
            if not ENV_KEY.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key in RESERVED_ENV:
                raise ValueError(f"{key} is set by koinonia-infra itself")
        if len(set(value)) != len(value):
            raise ValueError("duplicate keys")
        return value

    @model_validator(mode="after")
    def _cross(self) -> ApiSettings:
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"{', '.join(both)} listed in both env and secretEnv")
        stray = sorted(n for n in self.import_ids if n not in self.instances)
        if stray:
            raise ValueError(f"importIds names undeclared instance(s) {stray}")
        return self

    def service_name(self, number: int) -> str:
        """Instance 1 keeps the existing production name; k >= 2 get a numeric suffix."""
        return self.name if number == 1 else f"{self.name}-{number}"


class PostgresSettings(_Model):
    name: str = "koinonia-db"
    plan: PostgresPlan = "basic_1gb"
    version: PostgresVersion = "16"
    disk_size_gb: int | None = Field(default=None, ge=1, le=16384)
    high_availability: bool = False
    database_name: str | None = None
    database_user: str | None = None
    import_id: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        # YAML reads `version: 16` as an int; Render wants the string.
        return str(value) if isinstance(value, int) else value


class KeyValueSettings(_Model):
    name: str = "koinonia-cache"
    plan: KeyValuePlan = "starter"
    maxmemory_policy: MaxmemoryPolicy = "allkeys_lru"
    import_id: str | None = None


class EdgeSettings(_Model):
    enabled: bool = True
    name: str = "koinonia-edge"
    plan: WebPlan = "starter"
    # Pinned tag: the Caddyfile is validated against this major.minor (Debian ships 2.6.2).
    image: str = "docker.io/library/caddy:2.6.4-alpine"
    # At least 0.1 s: Caddy durations are written in whole milliseconds, and 0 is not a pace.
    health_check_interval_seconds: float = Field(default=2.0, ge=0.1, le=60)
    health_check_timeout_seconds: float = Field(default=2.0, ge=0.1, le=30)
    # How long the edge keeps retrying other upstreams before a client sees an error.
    retry_window_seconds: float = Field(default=5.0, ge=0, le=60)
    retry_interval_ms: int = Field(default=100, ge=10, le=5000)
    # How long one failed request keeps an upstream out of rotation. Short on purpose: active
    # checks (every 2 s) already keep a dead upstream out, and a longer memory only delays the
    # rejoin of an instance that is healthy again.
    fail_duration_seconds: float = Field(default=3.0, gt=0, le=300)
    # Upstream side (Caddy's `transport http`). Connecting on Render's private network takes
    # milliseconds; an instance that does not connect within a second is as good as gone.
    dial_timeout_seconds: float = Field(default=1.0, ge=0.1, le=30)
    # Time to the first byte of an instance's answer. A hung instance (blocked event loop, stuck
    # pool) accepts connections and never answers: without this bound a request waits forever.
    # It must stay below the retry window, or a timed-out GET is never retried (Caddy stops
    # retrying once the window has elapsed), and above the slowest legitimate endpoint.
    upstream_response_timeout_seconds: float = Field(default=3.0, ge=0.1, le=300)
    # Client side (Caddy's global `servers { timeouts }`), so slow or idle clients cannot hold
    # the edge's connections forever. Render's proxy sends a request's headers at once.
    client_header_timeout_seconds: float = Field(default=10.0, ge=0.1, le=300)
    # The whole request, headers and body (Go's http.Server ReadTimeout): the API's bodies are
    # small JSON, so a minute is generous even on a poor mobile link.
    client_body_timeout_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    # Caddy's own default. Render's proxy reuses idle connections to the edge and does not
    # publish its idle timeout: an edge that closes first would make it answer 502 (the
    # keep-alive race), so this stays long; read timeouts above bound the slow clients.
    client_idle_timeout_seconds: float = Field(default=300.0, ge=0.1, le=3600)

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str) -> str:
        tag = value.rsplit("/", 1)[-1]
        if ":" not in tag or tag.endswith(":latest"):
            raise ValueError("pin the Caddy image to a version tag, e.g. caddy:2.6.4-alpine")
        return value

    @model_validator(mode="after")
    def _retry_after_timeout(self) -> EdgeSettings:
        # Caddy's LoadBalancing.tryAgain (caddyserver/caddy v2.6.2,
        # modules/caddyhttp/reverseproxy/reverseproxy.go) gives up once `lb_try_duration` has
        # elapsed since the request started, so a response timeout as long as the window would
        # turn every hung-instance GET into an error instead of a retry.
        window = self.retry_window_seconds
        if window > 0 and self.upstream_response_timeout_seconds >= window:
            raise ValueError(
                f"upstreamResponseTimeoutSeconds ({self.upstream_response_timeout_seconds:g}) "
                f"must be shorter than retryWindowSeconds ({window:g}), or a request to a hung "
                "instance is never retried on another one"
            )
        return self


SmokeMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
# Methods that change nothing by definition (RFC 9110 §9.2.1 "safe methods"): a smoke check runs
# on every instance and again through the edge, so anything else must be declared harmless.
SAFE_METHODS: frozenset[str] = frozenset({"GET", "HEAD"})
SMOKE_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")
JSON_FIELD = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


class SmokeCheck(_Model):
    """One functional check of `verify` (`koinonia:verify.smoke`): a request to every instance
    and through the edge, its status and optionally a JSON field of its answer checked."""

    name: str = Field(min_length=1, max_length=80)
    method: SmokeMethod = "GET"
    path: str
    expect_status: int = Field(default=200, ge=100, le=599)
    # A dotted path (`data.id`) that must be present in the JSON answer; None: any body.
    json_field: str | None = None
    # Required for any method but GET and HEAD: the request is sent N + 1 times.
    safe_to_repeat: bool = False

    @field_validator("path")
    @classmethod
    def _smoke_path(cls, value: str) -> str:
        if not SMOKE_PATH.fullmatch(value):
            raise ValueError("must start with '/' and be a URL path without spaces or quotes")
        return value

    @field_validator("json_field")
    @classmethod
    def _field(cls, value: str | None) -> str | None:
        if value is not None and not JSON_FIELD.fullmatch(value):
            raise ValueError("must be a dotted field name such as `data.id`")
        return value

    @model_validator(mode="after")
    def _repeatable(self) -> SmokeCheck:
        if self.method not in SAFE_METHODS and not self.safe_to_repeat:
            raise ValueError(
                f"{self.name}: {self.method} runs on every instance and through the edge; "
                "only GET and HEAD unless `safeToRepeat: true`"
            )
        return self


class VerifySettings(_Model):
    """Thresholds of `verify`, defaults from the runbook; flags override them."""

    requests: int = Field(default=200, ge=1, le=1_000_000)
    concurrency: int = Field(default=16, ge=1, le=1024)
    share_tolerance_points: float = Field(default=10.0, gt=0, le=100)
    p95_ms: float = Field(default=250.0, gt=0)
    p50_ratio: float = Field(default=2.0, ge=1)
    max_error_rate_percent: float = Field(default=0.1, ge=0, le=100)
    # The `environment` every /health must report; None: the stack's `api.nodeEnv`.
    environment: str | None = None
    # The runbook's functional checks ("API endpoints work on both instances", …).
    smoke: list[SmokeCheck] = Field(default_factory=list)
    # Ceilings of `verify --capacity` (load on a real deployment is a risk of its own): the
    # ramp never goes past this many requests in flight nor runs longer than this.
    capacity_max_concurrency: int = Field(default=64, ge=1, le=1024)
    capacity_max_seconds: float = Field(default=120.0, gt=0, le=3600)

    @field_validator("smoke")
    @classmethod
    def _unique_smoke(cls, value: list[SmokeCheck]) -> list[SmokeCheck]:
        names = [c.name for c in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"smoke check names must be unique: {', '.join(repeated)}")
        return value


class OpsSettings(_Model):
    """Deadlines of `drill failover` and `rollout` on a real deployment (seconds); None keeps
    Render's own timing (koinonia_infra/ops/timing.py says where each comes from). Flags override
    them; the sandbox uses its own profile."""

    suspend_timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    deploy_timeout_seconds: float | None = Field(default=None, gt=0, le=7200)
    healthy_timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    rejoin_timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    overlap_seconds: float | None = Field(default=None, ge=0, le=600)
    poll_interval_seconds: float | None = Field(default=None, ge=1, le=60)


# Render's event types (the `EventFilterItem` enum of pulumi-render's `render:webhooks:Webhook`,
# cloudy-sky-software/pulumi-render sdk/python/pulumi_render/webhooks/_enums.py) that mean an
# instance, a deploy or a datastore is in trouble. A webhook filters by type only: a
# `deploy_ended` arrives for every deploy, its `details.deployStatus` says whether it failed.
DEFAULT_WEBHOOK_EVENTS: tuple[str, ...] = (
    "server_failed",
    "server_unhealthy",
    "server_hardware_failure",
    "deploy_ended",
    "image_pull_failed",
    "pre_deploy_ended",
    "service_suspended",
    "postgres_unavailable",
    "key_value_unhealthy",
)
# The secure key holding the webhook's URL (`pulumi config set --secret koinonia:<key> URL`):
# a webhook URL is a credential for whoever receives the events.
MONITOR_WEBHOOK_URL_KEY = "monitorWebhookUrl"


class MonitorSettings(_Model):
    """Alert rules of `monitor --check` (the runbook's Step 8 defaults) and the event webhook.
    Unset latency and split thresholds follow `koinonia:verify` (p95Ms, shareTolerancePoints)."""

    cpu_percent: float = Field(default=80.0, gt=0, le=1000)
    memory_percent: float = Field(default=90.0, gt=0, le=100)
    error_rate_percent: float = Field(default=1.0, ge=0, le=100)
    p95_ms: float | None = Field(default=None, gt=0)
    share_tolerance_points: float | None = Field(default=None, gt=0, le=100)
    # Fewer requests through the edge than this in the window: the split is not judged (a
    # handful of health checks says nothing about a 50/50 balance).
    min_requests_for_split: int = Field(default=100, ge=1)
    webhook_events: list[str] = Field(default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS))

    @field_validator("webhook_events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        from koinonia_infra.monitor.events import WEBHOOK_EVENT_TYPES

        unknown = [v for v in value if v not in WEBHOOK_EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown Render event type(s): {', '.join(inert(u) for u in unknown)}"
            )
        return value


class Settings(_Model):
    owner_id: str
    region: Region = "oregon"
    api: ApiSettings = Field(default_factory=ApiSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    key_value: KeyValueSettings = Field(default_factory=KeyValueSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)

    @field_validator("owner_id")
    @classmethod
    def _owner(cls, value: str) -> str:
        if not re.fullmatch(r"(tea|usr)-[a-z0-9]+", value):
            raise ValueError("expected a Render workspace id like tea-xxxxxxxxxxxxxxxxxxxx")
        return value

    @model_validator(mode="after")
    def _expected_environment(self) -> Settings:
        # A staging stack with nodeEnv "staging" must not be verified against "production".
        if self.verify.environment is None:
            verify = self.verify.model_copy(update={"environment": self.api.node_env})
            object.__setattr__(self, "verify", verify)  # frozen model: set once, while validating
        return self


# --------------------------------------------------------------------------------------------
# Parsing: from a config mapping (stack file or pulumi.Config) to Settings, errors as lines.
# --------------------------------------------------------------------------------------------

_MODEL_FOR_KEY: dict[str, type[BaseModel]] = {
    "api": ApiSettings,
    "postgres": PostgresSettings,
    "keyValue": KeyValueSettings,
    "edge": EdgeSettings,
    "verify": VerifySettings,
    "ops": OpsSettings,
    "monitor": MonitorSettings,
}
TOP_LEVEL_KEYS = ("ownerId", "region", *_MODEL_FOR_KEY)


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in known}
        if key.lower() in lowered:
            close = [lowered[key.lower()]]
    return f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _is_secure(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"secure"}


def settings_from_config(config: Mapping[str, Any], *, source: str = "") -> Settings:
    """Validate a `koinonia:`-namespace config mapping (keys without the namespace prefix).

    Keys listed in `api.secretEnv` may appear at top level (their secure values); any other
    unknown key is an error with a "did you mean" hint.
    """
    where = f"{source}: " if source else ""
    problems: list[str] = []
    data: dict[str, Any] = {}
    secret_env = _secret_env_keys(config.get("api"))
    for key, value in config.items():
        if key in TOP_LEVEL_KEYS:
            data[key] = value
        elif key in secret_env or key == MONITOR_WEBHOOK_URL_KEY:
            if not _is_secure(value) and not isinstance(value, SecretValue):
                problems.append(
                    f"{where}{NAMESPACE}:{key}: secret value stored in plaintext; "
                    f"run `pulumi config set --secret {NAMESPACE}:{key}`"
                )
        else:
            problems.append(
                f"{where}{NAMESPACE}:{key}: unknown key{_hint(str(key), list(TOP_LEVEL_KEYS))}"
            )
    for key, model in _MODEL_FOR_KEY.items():
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, Mapping):
            problems.append(f"{where}{NAMESPACE}:{key}: expected a mapping of settings")
            data.pop(key)
            continue
        known = _aliases(model)
        snake = list(model.model_fields)
        for sub in section:
            if sub not in known and sub not in snake:
                problems.append(
                    f"{where}{NAMESPACE}:{key}.{sub}: unknown key{_hint(str(sub), known)}"
                )
        data[key] = {k: v for k, v in section.items() if k in known or k in snake}
    if "ownerId" not in data:
        problems.append(f"{where}{NAMESPACE}:ownerId: required (your Render workspace id, tea-…)")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _format_loc(err["loc"])
            if err["type"] == "missing" and loc == "ownerId":
                continue  # reported above with a hint
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}{NAMESPACE}:{loc}: {msg}")
    if problems:
        if len(problems) > MAX_PROBLEM_LINES:
            # A hostile list (100,000 non-numbers) must not become 100,000 lines of output.
            more = len(problems) - MAX_PROBLEM_LINES
            problems = [*problems[:MAX_PROBLEM_LINES], f"{where}… and {more} more problem(s)"]
        raise ConfigError(f"invalid settings{' in ' + source if source else ''}", lines=problems)
    return settings


def _secret_env_keys(api: Any) -> set[str]:
    if isinstance(api, Mapping):
        keys = api.get("secretEnv", api.get("secret_env"))
        if isinstance(keys, list):
            return {k for k in keys if isinstance(k, str)}
    return set()


class SecretValue(str):
    """A config value known to be secret (a `secure:` entry of a stack file, or a key the engine
    marks secret); it stands in for the value, which is never kept."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, made as strict as the engine's own: the Pulumi CLI reads
    `Pulumi.<stack>.yaml` with gopkg.in/yaml.v3 (pulumi/pulumi sdk/go/common/encoding/marshal.go,
    `yamlMarshaler.Unmarshal`, used by sdk/go/common/workspace/loaders.go), which refuses a
    repeated mapping key with "line N: mapping key "k" already defined at line M"
    (yaml.v3 decode.go, `decoder.mapping`). PyYAML keeps the last one silently, so a bad merge
    could move `region` or drop an instance without anyone seeing it."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.MarkedYAMLError(
                    problem=f"nested more than {MAX_YAML_DEPTH} levels deep", problem_mark=mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                # As yaml.v3: same kind and same text, so `1:` and `"1":` collide too.
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.MarkedYAMLError(
                        problem=f"mapping key {key_node.value!r} already defined at line "
                        f"{seen[key]}",
                        problem_mark=key_node.start_mark,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_strict(text: str, *, source: str) -> Any:
    """Parse YAML text the way the Pulumi engine would accept it; ConfigError (one line, naming
    `source`, line and column) otherwise. Every reader of a stack or project file uses this."""
    if len(text) > MAX_STACK_FILE_BYTES:
        raise ConfigError(f"{source}: too large for a stack file ({len(text)} characters)")
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        # A control character (an escape sequence, a NUL) anywhere in the file: PyYAML refuses
        # it like yaml.v3 does; its own message spans lines.
        char = exc.character
        code = char if isinstance(char, int) else ord(str(char)[:1] or "\0")
        raise ConfigError(
            f"{source}: not valid YAML: control character U+{code:04X} at position "
            f"{exc.position} (YAML text cannot hold it)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: not valid YAML{at}: {inert(str(problem))}") from None
    except RecursionError:  # belt and braces: the depth bound should stop it first
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def stack_config_of_text(text: str, *, source: str) -> dict[str, Any]:
    """The `koinonia:` namespace of stack-file text, prefix stripped; other namespaces ignored."""
    doc = load_yaml_strict(text, source=source)
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: expected a mapping with a 'config:' section")
    config = doc.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: 'config' must be a mapping of namespace:key to value")
    result: dict[str, Any] = {}
    for raw_key, value in config.items():
        key = str(raw_key)
        namespace, sep, name = key.partition(":")
        if not sep:
            # Pulumi qualifies bare keys with the project name.
            namespace, name = NAMESPACE, key
        if namespace != NAMESPACE:
            continue
        result[name] = SecretValue("[secret]") if _is_secure(value) else value
    return result


def read_stack_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: stack file not found (create it, or pass --stack NAME of an existing one)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read stack file: {exc}") from None


def read_stack_config(path: Path) -> dict[str, Any]:
    """The `koinonia:` namespace of a stack file, prefix stripped. Other namespaces are ignored."""
    return stack_config_of_text(read_stack_text(path), source=str(path))


def load_settings(path: Path) -> Settings:
    """Settings from a `Pulumi.<stack>.yaml` file, validated; raises ConfigError."""
    return settings_from_config(read_stack_config(path), source=str(path))
