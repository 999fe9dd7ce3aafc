#!/usr/bin/env bash
# Builds the local debian:bookworm-slim base for offline mode with debootstrap + docker import.
# Why: no registry can be reached here, but Debian's plain-HTTP mirror can. The image is labelled
# with a hash of this script, so a second run with the same script costs a single `docker inspect`.
set -euo pipefail

TAG="${BASE_IMAGE_TAG:-debian:bookworm-slim}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SUITE=bookworm
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
recipe_hash="$(sha256sum "$here/build-base.sh" | cut -c1-16)"

have="$(docker image inspect --format '{{ index .Config.Labels "org.stackcheck.recipe" }}' "$TAG" 2>/dev/null || true)"
if [[ "$have" == "$recipe_hash" ]]; then
  echo "base image $TAG is current (recipe $recipe_hash)"
  exit 0
fi

command -v debootstrap >/dev/null || {
  echo "debootstrap is missing: install it (apt-get install debootstrap) and run again" >&2
  exit 1
}

work="$(mktemp -d /var/tmp/stackcheck-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
echo "debootstrap $SUITE from $MIRROR (a few minutes, once)"
debootstrap --variant=minbase --no-merged-usr "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  echo "debootstrap failed: is $MIRROR reachable? The log is above." >&2
  exit 1
}

# Slim like the official image: no docs, man pages or locales from later installs; apt keeps no cache.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG
cat >"$rootfs/etc/apt/sources.list" <<LIST
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
LIST
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log

echo "importing as $TAG"
tar -C "$rootfs" --numeric-owner -c . | docker import \
  --change "CMD [\"bash\"]" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "LABEL org.stackcheck.recipe=$recipe_hash" \
  - "$TAG" >/dev/null
echo "base image $TAG built (recipe $recipe_hash)"
