"""The sandbox supervisor: a daemon (own session and process group, PID in state.json) started
by `sandbox up`. It starts PostgreSQL, Redis, the API instances and the Caddy edge, serves the
control plane, and on SIGTERM stops everything it started.

Zero-downtime deploys: the supervisor binds each instance's public port itself and hands the
listening socket to every process of that instance. A deploy starts the new process on the SAME
socket but idle; only once its private /health port answers 200 is it told to accept (SIGUSR1),
and the old process is told to stop accepting and drain (SIGTERM). The socket never closes, so
no connection is refused or reset, and the edge config and descriptor addresses never change.
When an instance is suspended or its process dies, the supervisor closes the socket too, so the
port refuses connections (which the edge retries elsewhere) instead of queueing them forever.

Progress goes to stdout as JSON lines (`{"event": "progress"|"ready"|"error", "message": ...}`)
until ready; after that stdout is detached so the CLI can exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from koinonia_infra.caddy import (
    CADDYFILE_ENV,
    EDGE_SELF_HEALTH_PATH,
    edge_start_command,
    render_caddyfile,
)
from koinonia_infra.descriptor import Descriptor, EdgeRef, InstanceRef
from koinonia_infra.errors import KoinoniaError
from koinonia_infra.files import describe_os_error
from koinonia_infra.sandbox import postgres
from koinonia_infra.sandbox.binaries import Binaries, find_binaries
from koinonia_infra.sandbox.control_plane import (
    Deploy,
    Service,
    create_control_plane,
    now_iso,
    render_id,
)
from koinonia_infra.sandbox.datastores_api import Datastores, sandbox_datastores
from koinonia_infra.sandbox.observability import Observer
from koinonia_infra.sandbox.stack import edge_settings, supervisor_stack, write_sandbox_stack
from koinonia_infra.sandbox.state import (
    STATE_FILE,
    ProcessRecord,
    SandboxState,
    load_secrets,
    record_for,
    write_state,
)
from koinonia_infra.sandbox.timing import TimingProfile, profile
from koinonia_infra.settings import ApiSettings
from koinonia_infra.targets import sandbox_descriptor_path

START_HEALTH_TIMEOUT = 30.0
# Overrides the profile's health timeout (koinonia_infra/sandbox/timing.py) when set.
DEPLOY_HEALTH_TIMEOUT_ENV = "KOINONIA_SANDBOX_DEPLOY_TIMEOUT"
STOP_TIMEOUT = 12.0


# Where the ports chosen for PostgreSQL, Redis and Caddy are looked for first (see _free_port).
LOW_PORTS = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_floor() -> int | None:
    """The lowest port the kernel gives an outgoing connection, where it says (Linux)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    """A free port for a child that binds it itself, some seconds later (PostgreSQL, Redis,
    Caddy, which take no listening socket from us).

    Chosen below the kernel's ephemeral range where there is one: until the child binds it, an
    outgoing connection (an instance's to PostgreSQL, a health check) may be given any free port
    of that range, and the child would then fail with "address already in use"; a port below it
    is never handed out that way. Elsewhere, or when none is free there, the kernel's choice.
    """
    floor = _ephemeral_floor()
    if floor is not None and floor > LOW_PORTS:
        for _ in range(64):
            port = LOW_PORTS + secrets.randbelow(floor - LOW_PORTS)
            if _bindable(port):
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


def _listening_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    # Only what a process needs: the caller's secrets (RENDER_API_KEY…) never reach children.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(extra)
    return env


class Supervisor:
    def __init__(
        self,
        state_dir: Path,
        numbers: list[int],
        emit: Emitter,
        timing: TimingProfile | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.timing = timing or profile(None)
        if os.environ.get(DEPLOY_HEALTH_TIMEOUT_ENV):
            self.timing = dataclasses.replace(
                self.timing, health_timeout_seconds=float(os.environ[DEPLOY_HEALTH_TIMEOUT_ENV])
            )
        self.numbers = numbers
        self.emit = emit
        self.bins: Binaries = find_binaries()
        self.secrets = load_secrets(state_dir)
        self.token = secrets.token_urlsafe(32)
        # On Render every instance builds the same repo and branch, so their initial deploys run
        # the same commit: one id for all of them, never one per instance.
        self.commit = secrets.token_hex(20)
        self.api = ApiSettings()
        # The stack `sandbox up --stack` chose (sandbox/stack.py): production's edge settings,
        # kept in the state dir for `verify --target sandbox`.
        stack = supervisor_stack()
        write_sandbox_stack(state_dir, stack)
        self.edge_settings = edge_settings(stack)
        self.edge_caddyfile = ""  # set when the edge starts
        self.services: dict[str, Service] = {}
        # The control plane's Postgres and Key Value (GET /v1/postgres, /v1/key-value).
        self.datastores: Datastores | None = None
        self.children: dict[str, asyncio.subprocess.Process] = {}
        self.sockets: dict[int, socket.socket] = {}
        self.expected_exit: set[int] = set()
        self.ports: dict[str, int] = {}
        self.pg_user = postgres.choose_user()
        self.pg_root = postgres.cluster_root(state_dir, self.pg_user)
        self.pg_data: Path | None = None
        self.pg_pid: int | None = None
        self.logs = state_dir / "logs"
        self.started_at = now_iso()
        self.control_url = ""
        self._runner: Any = None
        self._session: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres")
        self._pg_future: Future[None] | None = None
        # Metrics, logs and events of the control plane (GET /v1/metrics/*, /v1/logs, events).
        self.observer = Observer(self)

    # ---- bookkeeping -------------------------------------------------------------------------

    def save_state(self, running: bool = True) -> None:
        records: list[ProcessRecord] = []
        if self.pg_pid is not None:
            records.append(record_for("postgres", self.pg_pid))
        for role, proc in self.children.items():
            if proc.returncode is None:
                records.append(record_for(role, proc.pid))
        write_state(
            self.state_dir,
            SandboxState(
                running=running,
                supervisor=record_for("supervisor", os.getpid()),
                processes=records if running else [],
                ports=self.ports,
                postgres_dir=str(self.pg_root),
                started_at=self.started_at,
                control_plane_url=self.control_url or None,
            ),
        )

    def _log(self, name: str) -> IO[bytes]:
        return (self.logs / f"{name}.log").open("ab")

    def _background(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- processes ---------------------------------------------------------------------------

    async def _stop(self, proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
        self.expected_exit.add(proc.pid)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        with contextlib.suppress(ProcessLookupError):
            # Anything the process left in its group goes with it.
            os.killpg(proc.pid, signal.SIGKILL)

    def _instance_socket(self, number: int) -> socket.socket:
        sock = self.sockets.get(number)
        if sock is None:
            sock = _listening_socket(self.ports[f"api-{number}"])
            self.sockets[number] = sock
        return sock

    def _close_socket(self, number: int) -> None:
        sock = self.sockets.pop(number, None)
        if sock is not None:
            sock.close()

    async def _spawn_instance(
        self, service: Service, env: dict[str, str], *, active: bool, fail: bool = False
    ) -> tuple[asyncio.subprocess.Process, int]:
        assert service.number is not None
        public = self._instance_socket(service.number)
        control = _listening_socket()
        cmd = [
            sys.executable, "-m", "koinonia_infra.sandbox.api_server",
            "--listen-fd", str(public.fileno()), "--control-fd", str(control.fileno()),
        ]  # fmt: skip
        if active:
            cmd.append("--active")
        if fail:
            cmd.append("--fail-health")
        with self._log(f"api-{service.number}") as log:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                env=_child_env({**env, "KOINONIA_SERVICE": service.name}),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(public.fileno(), control.fileno()),
                start_new_session=True,
            )
        port: int = control.getsockname()[1]
        control.close()
        self._background(self._watch_instance(service, proc))
        return proc, port

    async def _watch_instance(self, service: Service, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        role = f"api-{service.number}"
        if proc.pid in self.expected_exit or self.children.get(role) is not proc:
            return
        # Died on its own (crash, kill): refuse connections rather than queue them unanswered.
        assert service.number is not None
        self._close_socket(service.number)
        self.children.pop(role, None)
        # Render's event for an instance that exited unasked (spec: Server Failed details).
        # A signal shows as the shell's exit status, 128 + signal (SIGKILL: 137).
        code = 128 - proc.returncode if proc.returncode and proc.returncode < 0 else proc.returncode
        reason = {"evicted": False, "earlyExit": True} | ({"nonZeroExit": code} if code else {})
        self.observer.event(service.id, "server_failed", {"reason": reason})
        self.save_state()

    async def _wait_healthy(
        self, port: int, proc: asyncio.subprocess.Process | None, timeout: float, path: str
    ) -> bool:
        import aiohttp

        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{port}{path}"
        while time.monotonic() < deadline:
            if proc is not None and proc.returncode is not None:
                return False
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with self._session.get(url) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return True
            await asyncio.sleep(0.1)
        return False

    async def _start_redis(self) -> None:
        port = self.ports["redis"]
        data = self.state_dir / "redis"
        data.mkdir(exist_ok=True)
        conf = self.state_dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(
                "bind 127.0.0.1\n"
                f"port {port}\n"
                "protected-mode yes\n"
                "daemonize no\n"
                'save ""\n'
                "appendonly no\n"
                f'dir "{data}"\n'
                f"requirepass {self.secrets['redisPassword']}\n"
                # What the control plane reports (options.maxmemoryPolicy), as Render's default.
                "maxmemory-policy allkeys-lru\n"
            )
        with self._log("redis") as log:
            self.children["redis"] = await asyncio.create_subprocess_exec(
                str(self.bins.redis_server), str(conf),
                env=_child_env({}), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        self.save_state()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            if self.children["redis"].returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise KoinoniaError(f"redis-server did not start on 127.0.0.1:{port}; see {self.logs}")

    async def _start_edge(self) -> None:
        upstreams = [f"127.0.0.1:{self.ports[f'api-{n}']}" for n in self.numbers]
        caddy_dir = self.state_dir / "caddy"
        caddy_dir.mkdir(exist_ok=True)
        caddyfile = render_caddyfile(
            upstreams,
            self.edge_settings,
            health_path=self.api.health_check_path,
            listen=f":{self.ports['edge']}",
            bind="127.0.0.1",
        )
        # Also the edge service's env var in the control plane, as pulumi-render's
        # EnvVarsForService sets it on Render: `status` reads the upstreams back from there.
        self.edge_caddyfile = caddyfile
        env = _child_env(
            {
                # Delivered like on Render: the start command writes it to caddy/Caddyfile.
                CADDYFILE_ENV: caddyfile,
                "HOME": str(caddy_dir),
                "XDG_DATA_HOME": str(caddy_dir / "data"),
                "XDG_CONFIG_HOME": str(caddy_dir / "config"),
            }
        )
        # The very text Render runs, only its paths changed: the binary is copied into caddy/
        # and the copy exec'd, so the start command itself is exercised here.
        command = edge_start_command(caddy=str(self.bins.caddy), workdir=str(caddy_dir))
        with self._log("caddy") as log:
            self.children["edge"] = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command,
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        self.save_state()

    def _new_instance_service(
        self, number: int, db_url: str, redis_url: str
    ) -> tuple[Service, Deploy]:
        port = self.ports[f"api-{number}"]
        service = Service(
            id=render_id("srv"),
            name=self.api.service_name(number),
            kind="instance",
            url=f"http://127.0.0.1:{port}",
            port=port,
            number=number,
            build_command=self.api.build_command or "",
            start_command=self.api.start_command or "",
            health_check_path=self.api.health_check_path,
            plan=self.api.plan,
            env={
                "DATABASE_URL": db_url,
                "REDIS_URL": redis_url,
                "NODE_ENV": self.api.node_env,
                "PORT": str(port),
                "KOINONIA_INSTANCE": f"api-{number}",
            },
        )
        deploy = Deploy(
            id=render_id("dep"),
            status="update_in_progress",
            commit_id=self.commit,
            commit_message="sandbox initial deploy",
            trigger="new_commit",
            env=dict(service.env),
        )
        service.deploys.append(deploy)
        return service, deploy

    def _new_edge_service(self) -> Service:
        port = self.ports["edge"]
        edge = Service(
            id=render_id("srv"),
            name=self.edge_settings.name,
            kind="edge",
            url=f"http://127.0.0.1:{port}",
            port=port,
            # Image-backed, as on Render: the service reports `imagePath`, its deploys `image`.
            image=self.edge_settings.image,
            # Empty: the image's own CMD, as a Render image service without a docker command.
            start_command="",
            health_check_path=EDGE_SELF_HEALTH_PATH,
            plan=self.edge_settings.plan,
            env={CADDYFILE_ENV: self.edge_caddyfile},
        )
        deploy = Deploy(
            id=render_id("dep"),
            status="update_in_progress",
            commit_id="",
            commit_message="sandbox edge",
            trigger="new_commit",
            env={},
            image=edge.image,
        )
        deploy.set_status("live")
        edge.deploys.append(deploy)
        return edge

    def _start_postgres(self) -> None:
        password = self.secrets["postgresPassword"]
        self.pg_data = postgres.ensure_cluster(self.bins, self.pg_root, password, self.pg_user)
        self.pg_pid = postgres.start(
            self.bins, self.pg_root, self.pg_data, self.ports["postgres"], self.pg_user
        )
        postgres.create_database(self.ports["postgres"], password)

    # ---- start / stop ------------------------------------------------------------------------

    async def start(self) -> None:
        import aiohttp
        from aiohttp import web

        self.logs.mkdir(parents=True, exist_ok=True)
        # No keep-alive: an idle connection of ours would hold up an instance's drain.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=2),
            connector=aiohttp.TCPConnector(force_close=True),
        )
        for number in self.numbers:
            sock = _listening_socket()
            self.sockets[number] = sock
            self.ports[f"api-{number}"] = sock.getsockname()[1]
        for name in ("postgres", "redis", "edge"):
            self.ports[name] = _free_port()
        control_sock = _listening_socket()
        self.ports["control-plane"] = control_sock.getsockname()[1]
        self.control_url = f"http://127.0.0.1:{self.ports['control-plane']}/v1"
        self.save_state()

        fresh = not (self.pg_root / "data" / "PG_VERSION").exists()
        self.emit.progress(
            f"postgres: {'initdb into' if fresh else 'starting the cluster in'} {self.pg_root}"
        )
        # A plain thread future: if start is cancelled, shutdown still waits for it to settle
        # rather than leaving a postmaster behind that nobody recorded.
        self._pg_future = self._executor.submit(self._start_postgres)
        try:
            await self._start_redis()
            self.emit.progress(f"redis ready on 127.0.0.1:{self.ports['redis']}")
            db_url = postgres.database_url(self.ports["postgres"], self.secrets["postgresPassword"])
            redis_url = (
                f"redis://:{self.secrets['redisPassword']}@127.0.0.1:{self.ports['redis']}/0"
            )
            for number in self.numbers:
                service, deploy = self._new_instance_service(number, db_url, redis_url)
                self.services[service.id] = service
                proc, _ = await self._spawn_instance(service, deploy.env, active=True)
                self.children[f"api-{number}"] = proc
            self.save_state()
        finally:
            await asyncio.wrap_future(self._pg_future)
        self.save_state()
        self.datastores = sandbox_datastores(self.pg_data, self.bins.redis_server)
        self.emit.progress(f"postgres ready on 127.0.0.1:{self.ports['postgres']}")

        for service in self.services.values():
            ok = await self._wait_healthy(
                service.port, self.children[f"api-{service.number}"], START_HEALTH_TIMEOUT,
                self.api.health_check_path,
            )  # fmt: skip
            if not ok:
                raise KoinoniaError(
                    f"{service.name} never answered /health on {service.url}; "
                    f"see {self.logs / f'api-{service.number}.log'}"
                )
            live = service.deploys[0]
            live.set_status("live")
            self.emit.progress(f"{service.name} healthy on {service.url}")

        await self._start_edge()
        edge_port = self.ports["edge"]
        if not await self._wait_healthy(
            edge_port, self.children["edge"], START_HEALTH_TIMEOUT, self.api.health_check_path
        ):
            raise KoinoniaError(f"the edge never answered /health on 127.0.0.1:{edge_port}")
        edge = self._new_edge_service()
        self.services[edge.id] = edge
        self.emit.progress(f"edge (caddy) healthy on {edge.url}")

        self._runner = web.AppRunner(
            create_control_plane(self, self.token), access_log=None, handle_signals=False
        )
        await self._runner.setup()
        await web.SockSite(self._runner, control_sock).start()
        self._write_descriptor(edge)
        self.save_state()
        self.emit.progress(f"control plane on {self.control_url}")

    def _write_descriptor(self, edge: Service) -> None:
        instances = [
            InstanceRef(
                number=s.number,
                name=s.name,
                service_id=s.id,
                url=s.url,
                # Render's form, `<slug>:<port>` (the slug is never the name). The sandbox's
                # edge dials the loopback address of `url` instead: nothing resolves the slug
                # here without root (/etc/hosts) or a DNS server, and Caddy's static upstreams
                # resolve through the system resolver.
                private_address=f"{s.slug}:{s.port}",
            )
            for s in self.services.values()
            if s.kind == "instance" and s.number is not None
        ]
        Descriptor(
            stack="sandbox",
            environment=self.api.node_env,
            region="local",
            edge_url=edge.url,
            edge=EdgeRef(name=edge.name, service_id=edge.id),
            instances=instances,
            postgres_id=self.datastores.postgres[0].id if self.datastores else "dpg-sandbox",
            key_value_id=self.datastores.key_values[0].id if self.datastores else "red-sandbox",
            render_api_url=self.control_url,
            render_api_key=SecretStr(self.token),
            sandbox_timing=self.timing.name,
        ).write(sandbox_descriptor_path(self.state_dir), include_key=True)

    async def shutdown(self) -> None:
        # First, so nothing resolves `--target sandbox` to processes that are about to stop.
        sandbox_descriptor_path(self.state_dir).unlink(missing_ok=True)
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
        for service in self.services.values():
            if service.deploy_task is not None:
                service.deploy_task.cancel()
        instances = [p for r, p in self.children.items() if r.startswith("api-")]
        await asyncio.gather(*(self._stop(p) for p in instances))
        for number in list(self.sockets):
            self._close_socket(number)
        for role in ("edge", "redis"):
            proc = self.children.get(role)
            if proc is not None:
                await self._stop(proc)
        if self._pg_future is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._pg_future)
        if self.pg_data is not None and (self.pg_data / "postmaster.pid").exists():
            try:
                await asyncio.to_thread(postgres.stop, self.bins, self.pg_root, self.pg_data,
                                        self.pg_user)  # fmt: skip
            except KoinoniaError:
                if self.pg_pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pg_pid, signal.SIGQUIT)
        self.pg_pid = None
        self.children.clear()
        if self._session is not None:
            await self._session.close()
        # Everything is stopped. On a full disk this last record cannot be written: the record
        # goes instead (an unlink needs no space), so nothing is left claiming a running sandbox;
        # and the error that stopped a start must still reach `sandbox up` rather than this one.
        try:
            self.save_state(running=False)
        except KoinoniaError:
            with contextlib.suppress(OSError):
                (self.state_dir / STATE_FILE).unlink()

    # ---- the control plane's backend ---------------------------------------------------------

    async def suspend(self, service: Service) -> None:
        async with service.busy:
            if service.kind == "edge":
                proc = self.children.pop("edge", None)
                if proc is not None:
                    await self._stop(proc)
            else:
                assert service.number is not None
                proc = self.children.pop(f"api-{service.number}", None)
                # Close our copy first: once the process lets go too, the port refuses connections.
                self._close_socket(service.number)
                if proc is not None:
                    await self._stop(proc)
            self.save_state()

    async def resume(self, service: Service) -> None:
        await self._ensure_running(service)

    async def restart(self, service: Service) -> None:
        await self.suspend(service)
        await self._ensure_running(service)
        self.observer.event(service.id, "server_restarted", {"triggeredByUser": None})

    async def _ensure_running(self, service: Service) -> None:
        async with service.busy:
            if service.kind == "edge":
                proc = self.children.get("edge")
                if proc is None or proc.returncode is not None:
                    await self._start_edge()
                return
            role = f"api-{service.number}"
            proc = self.children.get(role)
            if proc is not None and proc.returncode is None:
                return
            live = service.live_deploy()
            env = live.env if live is not None else dict(service.env)
            self.children[role], _ = await self._spawn_instance(service, env, active=True)
            self.save_state()

    async def run_deploy(self, service: Service, deploy: Deploy, fail: float | None) -> None:
        try:
            async with service.busy:
                await asyncio.sleep(0.05)
                deploy.set_status("build_in_progress")
                # Render's build has no local equivalent: the profile's pause stands for it.
                await asyncio.sleep(self.timing.build_seconds)
                deploy.set_status("update_in_progress")
                ok = await (
                    self._deploy_edge(fail)
                    if service.kind == "edge"
                    else self._deploy_instance(service, deploy, fail)
                )
                if not ok:
                    deploy.set_status("update_failed")
                    return
                for other in service.deploys:
                    if other is not deploy and other.status == "live":
                        other.set_status("deactivated")
                deploy.set_status("live")
                service.updated_at = now_iso()
        except asyncio.CancelledError:
            deploy.set_status("canceled")
            raise
        except Exception as exc:
            print(f"deploy {deploy.id} of {service.name} failed: {exc!r}", file=sys.stderr)
            deploy.set_status("update_failed")

    async def _deploy_edge(self, fail: float | None) -> bool:
        if fail is not None:
            return False
        proc = self.children.pop("edge", None)
        if proc is not None:
            await self._stop(proc)
        await self._start_edge()
        return await self._wait_healthy(
            self.ports["edge"], self.children["edge"], 10, EDGE_SELF_HEALTH_PATH
        )

    async def _deploy_instance(self, service: Service, deploy: Deploy, fail: float | None) -> bool:
        role = f"api-{service.number}"
        new, control_port = await self._spawn_instance(
            service, deploy.env, active=False, fail=fail is not None
        )
        self.children[f"{role}-next"] = new
        self.save_state()
        healthy = await self._wait_healthy(
            control_port, new, fail or self.timing.health_timeout_seconds,
            service.health_check_path,
        )  # fmt: skip
        del self.children[f"{role}-next"]
        if not healthy:
            # Render's behaviour: the new version never takes traffic, the old keeps serving.
            await self._stop(new)
            self.save_state()
            return False
        old = self.children.get(role)
        self.children[role] = new
        os.kill(new.pid, signal.SIGUSR1)
        self.save_state()
        if old is not None and self.timing.overlap_seconds > 0:
            # Render keeps the old instance 60 s after the switch, then SIGTERM: the deploy is
            # already `live` meanwhile. (Here the old process still shares the socket during
            # the overlap, so it may answer some requests; on Render it gets no new ones.)
            retiring = f"{role}-old-{old.pid}"
            self.children[retiring] = old
            self.save_state()
            self._background(self._retire(retiring, old))
        elif old is not None:
            await self._stop(old)
        self.save_state()
        return True

    async def _retire(self, role: str, proc: asyncio.subprocess.Process) -> None:
        await asyncio.sleep(self.timing.overlap_seconds)
        await self._stop(proc)
        if self.children.get(role) is proc:
            del self.children[role]
        self.save_state()

    def add_service(self, service: Service) -> None:
        """A web service created through POST /services: the next instance number, its own
        loopback port and socket; its first deploy (run_deploy) starts its process."""
        taken = [s.number for s in self.services.values() if s.number is not None]
        number = max([*taken, 0]) + 1
        sock = _listening_socket()
        port: int = sock.getsockname()[1]
        self.sockets[number] = sock
        self.ports[f"api-{number}"] = port
        service.number = number
        service.port = port
        service.url = f"http://127.0.0.1:{port}"


class Emitter:
    """Progress lines for the CLI that is waiting on our stdout; silent once detached."""

    def __init__(self) -> None:
        self.attached = True

    def _send(self, event: str, message: str) -> None:
        if not self.attached:
            return
        try:
            sys.stdout.write(json.dumps({"event": event, "message": message}) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            self.attached = False

    def progress(self, message: str) -> None:
        self._send("progress", message)

    def ready(self, message: str) -> None:
        self._send("ready", message)
        self.detach()

    def error(self, message: str) -> None:
        self._send("error", message)

    def detach(self) -> None:
        self.attached = False
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


def _reason(exc: BaseException) -> str:
    """What the CLI shows for a failed start: the project's message, or the path and the
    system's reason of an OSError (e.g. "…/state.json: No space left on device")."""
    if isinstance(exc, KoinoniaError):
        return exc.message
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return repr(exc)


async def _main(state_dir: Path, numbers: list[int], timing: TimingProfile) -> int:
    emit = Emitter()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        supervisor = Supervisor(state_dir, numbers, emit, timing)
    except (KoinoniaError, OSError) as exc:
        # Through the pipe, not our log: on a full disk the log cannot hold it.
        emit.error(_reason(exc))
        return 1
    starting = asyncio.create_task(supervisor.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    error: str | None = None
    if not starting.done():
        starting.cancel()
        error = "interrupted while starting"
    elif (failure := starting.exception()) is not None:
        error = _reason(failure)
    if error is not None:
        with contextlib.suppress(OSError):  # the log may sit on a full disk
            print(f"start failed: {error}", file=sys.stderr)
        emit.progress("start failed; stopping what was started")
        with contextlib.suppress(BaseException):
            await starting
        await supervisor.shutdown()
        emit.error(error)
        return 1
    emit.ready(f"sandbox ready in {state_dir}")
    await stopping
    await supervisor.shutdown()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m koinonia_infra.sandbox.supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--lock-fd", type=int, help="inherited flock on supervisor.lock")
    parser.add_argument("--timing", choices=["fast", "render"], default="fast")
    args = parser.parse_args(argv)
    # The inherited lock fd (args.lock_fd) stays open for the daemon's lifetime, so
    # "running" == "supervisor.lock is held", without trusting PIDs.
    numbers = list(range(1, args.instances + 1))
    sys.exit(asyncio.run(_main(args.state_dir.resolve(), numbers, profile(args.timing))))


if __name__ == "__main__":
    main()
