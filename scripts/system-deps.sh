#!/usr/bin/env bash
# Installs the binaries the sandbox runs (PostgreSQL, Redis, Caddy) when any is missing.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
missing=()
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
# setcap: the edge test that reproduces Render's refusal to exec a capability-marked Caddy.
if command -v apt-get >/dev/null 2>&1; then
  command -v setcap >/dev/null 2>&1 || [ -x /usr/sbin/setcap ] || missing+=(libcap2-bin)
fi
# wrk: benchmarks/bench_probe.py compares the load client with it (`make bench`).
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system deps: postgresql, redis-server, caddy, wrk (and setcap) present"
  exit 0
fi

echo "system deps: installing ${missing[*]}"
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The Debian packages start system-wide services; the sandbox runs its own on free ports.
  for svc in postgresql redis-server caddy; do
    $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
elif command -v brew >/dev/null 2>&1; then
  brew_names=()
  for m in "${missing[@]}"; do
    case "$m" in
      redis-server) brew_names+=(redis) ;;
      *) brew_names+=("$m") ;;
    esac
  done
  brew install "${brew_names[@]}"
else
  echo "system deps: install ${missing[*]} with your package manager" >&2
  exit 3
fi
