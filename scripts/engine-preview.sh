#!/usr/bin/env bash
# A real `koinonia-infra preview` of THIS project with the real (pinned) Pulumi engine and the
# policy pack, on a throwaway local file backend: what can be proven without a Render account.
#
#   scripts/engine-preview.sh [STACK]     (default prod; needs `pulumi` and the project's .venv)
#
# Why no Render account is needed for a preview of creates: the provider only requires a
# non-empty key when it is configured (cloudy-sky-software/pulumi-render,
# provider/pkg/provider/provider.go OnConfigure; the framework's Configure in
# pulumi-provider-framework rest/provider.go makes no request), a preview never calls Create, and
# the connection-info invokes take the datastores' ids, unknown until they exist, so the engine
# does not run them. A stack that sets importId/importIds would read live resources: run this on
# a stack without them.
set -euo pipefail
cd "$(dirname "$0")/.."

stack="${1:-prod}"
venv_bin="$PWD/.venv/bin"
[ -x "$venv_bin/koinonia-infra" ] || { echo "engine-preview: run \`make install\` first" >&2; exit 3; }
command -v pulumi >/dev/null || { echo "engine-preview: no \`pulumi\` on PATH" >&2; exit 3; }
export PATH="$venv_bin:$PATH"

state="$(mktemp -d)"
work="$(mktemp -d)"
trap 'rm -rf "$state" "$work"' EXIT

# A copy of the project, so `pulumi stack init` (which writes an encryption salt into the stack
# file) leaves the checkout untouched. The program runs with the project's own .venv.
cp Pulumi.yaml "Pulumi.$stack.yaml" "$work/"
cp -r stacks policy "$work/"
ln -s "$PWD/.venv" "$work/.venv"

export PULUMI_BACKEND_URL="file://$state"
# Encrypts only the placeholders below, in a backend deleted on exit.
export PULUMI_CONFIG_PASSPHRASE="engine-preview-throwaway"
export PULUMI_SKIP_UPDATE_CHECK=true
export KOINONIA_PROJECT_DIR="$work"
# Not a key: the provider only checks that one is set (see above). Never a real one here.
export RENDER_API_KEY="rnd_engine_preview_placeholder"

pulumi stack init "$stack" --cwd "$work" --non-interactive >/dev/null

# The secret env values the program requires, set as placeholders through stdin (never argv).
secret_keys="$("$venv_bin/python" - "$work/Pulumi.$stack.yaml" <<'PY'
import sys
from pathlib import Path

from koinonia_infra.settings import load_settings

print(" ".join(load_settings(Path(sys.argv[1])).api.secret_env))
PY
)"
for key in $secret_keys; do
  printf '%s' "placeholder-$key" | pulumi config set --secret --stack "$stack" --cwd "$work" "koinonia:$key"
done

echo "engine-preview: pulumi $(pulumi version), stack $stack, file backend, policy pack policy/"
koinonia-infra preview --stack "$stack"

cat <<'EOF'
engine-preview: passed. Not run here, because each needs a Render account:
  - up: creating the services, Postgres and Key Value, and Render's deploys;
  - the connection-info invokes (DATABASE_URL, REDIS_URL) and the private address (slug);
  - importing or refreshing live resources (importId/importIds, preview --refresh);
  - verify, status, drill and rollout against Render's API.
EOF
