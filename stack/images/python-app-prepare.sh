#!/usr/bin/env bash
# Gathers on the host what the image build cannot fetch itself (inside `docker build` only Debian's
# mirror is reachable): wheels for requirements.txt, and the package src/<name>.
# Usage (from an image folder's prepare.sh): python-app-prepare.sh <image folder> <package>
# Idempotent: wheels are fetched again only when requirements.txt changes.
set -euo pipefail
here="$(cd "$1" && pwd)"
pkg="$2"
ROOT="${ROOT:-$(cd "$here/../../.." && pwd)}"
py="${PYTHON:-$ROOT/.venv/bin/python}"
build="$here/build"
mkdir -p "$build/wheels"

want="$(sha256sum "$here/requirements.txt" | cut -c1-16)"
if [[ "$(cat "$build/wheels/.stamp" 2>/dev/null)" != "$want" ]]; then
  rm -rf "$build/wheels" && mkdir -p "$build/wheels"
  # Debian bookworm's python3 is 3.11 on glibc 2.36: the same ABI as a cp311 manylinux wheel
  "$py" -m pip download --quiet --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    -r "$here/requirements.txt" -d "$build/wheels"
  echo "$want" >"$build/wheels/.stamp"
  echo "wheels for requirements.txt fetched"
fi

rm -rf "$build/app.new" && mkdir -p "$build/app.new"
cp -r "$ROOT/src/$pkg" "$build/app.new/$pkg"
find "$build/app.new" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$build/app" && mv "$build/app.new" "$build/app"
echo "$pkg source copied"
