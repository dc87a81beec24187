"""The edge: its Caddyfile and its start command, pure functions with no Pulumi import.

The Render edge service and the local sandbox both run this exact text (the sandbox only
substitutes paths), so what the sandbox tests is what production serves. Only directives that
exist in Caddy 2.6 are used: Debian ships 2.6.2 and the edge pins 2.6.4; each one below is in
caddyserver/caddy v2.6.2 `modules/caddyhttp/reverseproxy/caddyfile.go` (reverse_proxy and
`transport http`) or `caddyconfig/httpcaddyfile/serveroptions.go` (global `servers`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from koinonia_infra.settings import HEALTH_PATH, EdgeSettings

UPSTREAM_HEADER = "X-Koinonia-Upstream"
# Answered by Caddy itself: Render's health check of the edge must not depend on the instances,
# or an outage of every instance would also get the edge restarted in a loop.
EDGE_SELF_HEALTH_PATH = "/_edge/health"
RENDER_PUBLIC_LISTEN = ":10000"
# The Caddyfile reaches the edge as this environment variable (see program/edge.py).
CADDYFILE_ENV = "KOINONIA_CADDYFILE"
# Where the official image puts the binary: caddyserver/caddy-docker 2.6/alpine/Dockerfile
# (`tar x -z -f /tmp/caddy.tar.gz -C /usr/bin caddy`).
IMAGE_CADDY = "/usr/bin/caddy"
# That image has no USER line (it runs as root) and /tmp exists in it (its build unpacks there);
# /tmp is writable for any user in any case.
IMAGE_WORKDIR = "/tmp"
# Addresses whose X-Forwarded-* headers Caddy keeps (appending the peer to X-Forwarded-For)
# instead of overwriting them: Render's proxy reaches a service from a private address
# (a Rails app on Render sees REMOTE_ADDR 10.21.x.x behind an X-Forwarded-For of client and
# CDN: rohitpaulk.com/articles/render-rails-remote-ip), and in the sandbox the client is on
# loopback. `private_ranges` is 192.168/16,
# 172.16/12, 10/8, 127/8, fd00::/8 and ::1 (caddyfile.go v2.6.2, `trusted_proxies`).
TRUSTED_PROXIES: tuple[str, ...] = ("private_ranges",)
# Methods retried on another upstream after the request may have reached one (a response
# timeout, a reset before the answer). Safe methods only (RFC 9110 §9.2.1): Caddy 2.6 does not
# buffer request bodies for a retry, and a POST that sends an SMS must never be sent twice. Errors
# while dialing are retried for every method, since no request left the edge
# (reverseproxy.go v2.6.2, LoadBalancing.tryAgain; without this list only GET is retried).
RETRY_METHODS = ("GET", "HEAD", "OPTIONS")

_UPSTREAM = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_TRUSTED = re.compile(r"^(private_ranges|[0-9A-Fa-f.:]+(/\d{1,3})?)$")


def _duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def edge_start_command(caddy: str = IMAGE_CADDY, workdir: str = IMAGE_WORKDIR) -> str:
    """The shell text the edge container runs (`/bin/sh -c <this>`), with `$KOINONIA_CADDYFILE`
    in its environment.

    From 2.6.3 on, the official image marks /usr/bin/caddy with a file capability
    (`setcap cap_net_bind_service=+ep /usr/bin/caddy`, caddyserver/caddy-docker commit b650917,
    2.6/alpine/Dockerfile; 2.6.2 has none). A file whose effective bit is set cannot be exec'd
    by a process whose bounding set lacks that capability: execve fails with EPERM
    (capabilities(7), "Safety checking for capability-dumb binaries"). Render's runtime is such
    a process: "exec user process caused: operation not permitted" for 2.6.3, 2.6.4 and their
    -alpine tags (caddyserver/caddy-docker issue 283). The edge listens on 10000 and needs no
    capability, so the command copies the binary and execs the copy: a plain `cp` creates a new
    file with the source's mode and copies no extended attribute (busybox libbb/copy_file.c
    opens the destination and copies bytes; GNU cp copies xattrs only with --preserve), so the
    copy carries no `security.capability`. This works for every tag, present and future, unlike
    pinning 2.6.2. An empty Caddyfile would start a Caddy that serves nothing and fails Render's
    health check in a loop: the shell stops first, naming the variable.
    """
    binary = shlex.quote(f"{workdir.rstrip('/')}/caddy")
    config = shlex.quote(f"{workdir.rstrip('/')}/Caddyfile")
    return (
        f': "${{{CADDYFILE_ENV}:?is empty: the edge has no Caddyfile}}" && '
        f"cp {shlex.quote(caddy)} {binary} && "
        f'printf "%s\\n" "${CADDYFILE_ENV}" > {config} && '
        f"exec {binary} run --config {config} --adapter caddyfile"
    )


def render_caddyfile(
    upstreams: Sequence[str],
    settings: EdgeSettings,
    *,
    health_path: str = "/health",
    listen: str = RENDER_PUBLIC_LISTEN,
    bind: str | None = None,
    trusted_proxies: Sequence[str] = TRUSTED_PROXIES,
) -> str:
    """Round robin over `upstreams` (host:port), health-checked actively and passively.

    A request that cannot reach an upstream (refused, reset, no answer within
    `upstream_response_timeout_seconds`) is retried on another one for `retry_window_seconds`
    (after a request may have reached an upstream: safe methods only), so an instance that dies,
    is suspended or hangs is invisible to clients. Such a failure keeps the upstream out for
    `fail_duration`; active checks keep a dead or hung one out for as long as it stays so, and
    bring it back at the first passing check once `fail_duration` has elapsed. An answer from
    the application, whatever its status, is never a failure of the instance: a 5xx on one route
    is the application's, and ejecting instances for it would take healthy routes down with it.
    """
    if not upstreams:
        raise ValueError("the edge needs at least one upstream")
    for upstream in upstreams:
        if not _UPSTREAM.match(upstream):
            raise ValueError(f"upstream {upstream!r} is not host:port")
    if len(set(upstreams)) != len(upstreams):
        raise ValueError("duplicate upstreams")
    if not HEALTH_PATH.fullmatch(health_path):
        raise ValueError(f"health path {health_path!r} is not a plain URL path")
    for trusted in trusted_proxies:
        if not _TRUSTED.match(trusted):
            raise ValueError(f"trusted proxy {trusted!r} is not an IP range or private_ranges")
    bind_line = f"\tbind {bind}\n" if bind else ""
    trusted_line = f"\t\t\ttrusted_proxies {' '.join(trusted_proxies)}\n" if trusted_proxies else ""
    s = settings
    return (
        "# Generated by koinonia-infra (render_caddyfile); do not edit by hand.\n"
        "{\n"
        # Render terminates TLS and nothing should reconfigure a running edge.
        "\tadmin off\n"
        "\tauto_https off\n"
        "\tservers {\n"
        "\t\ttimeouts {\n"
        f"\t\t\tread_header {_duration(s.client_header_timeout_seconds)}\n"
        f"\t\t\tread_body {_duration(s.client_body_timeout_seconds)}\n"
        f"\t\t\tidle {_duration(s.client_idle_timeout_seconds)}\n"
        "\t\t}\n"
        "\t}\n"
        "}\n"
        "\n"
        f"http://{listen.removeprefix('http://')} {{\n"
        f"{bind_line}"
        f"\thandle {EDGE_SELF_HEALTH_PATH} {{\n"
        '\t\trespond "ok" 200\n'
        "\t}\n"
        "\thandle {\n"
        f"\t\treverse_proxy {' '.join(upstreams)} {{\n"
        "\t\t\tlb_policy round_robin\n"
        f"\t\t\tlb_try_duration {_duration(s.retry_window_seconds)}\n"
        f"\t\t\tlb_try_interval {s.retry_interval_ms}ms\n"
        "\t\t\tlb_retry_match {\n"
        f"\t\t\t\tmethod {' '.join(RETRY_METHODS)}\n"
        "\t\t\t}\n"
        f"\t\t\thealth_uri {health_path}\n"
        f"\t\t\thealth_interval {_duration(s.health_check_interval_seconds)}\n"
        f"\t\t\thealth_timeout {_duration(s.health_check_timeout_seconds)}\n"
        "\t\t\thealth_status 2xx\n"
        # Passive checks count transport failures only (no `unhealthy_status`): see above.
        f"\t\t\tfail_duration {_duration(s.fail_duration_seconds)}\n"
        "\t\t\tmax_fails 1\n"
        f"{trusted_line}"
        f"\t\t\theader_down {UPSTREAM_HEADER} {{http.reverse_proxy.upstream.hostport}}\n"
        "\t\t\ttransport http {\n"
        f"\t\t\t\tdial_timeout {_duration(s.dial_timeout_seconds)}\n"
        f"\t\t\t\tresponse_header_timeout {_duration(s.upstream_response_timeout_seconds)}\n"
        "\t\t\t}\n"
        "\t\t}\n"
        "\t}\n"
        "}\n"
    )


def upstreams_of(caddyfile: str) -> list[str]:
    """The upstreams a Caddyfile written by `render_caddyfile` dials (its `reverse_proxy` line):
    what `status` reads back from the edge's environment to compare with the deployment."""
    match = re.search(r"reverse_proxy ([^{\n]+)\{", caddyfile)
    return match.group(1).split() if match else []
