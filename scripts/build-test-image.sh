#!/usr/bin/env bash
# Builds the PostgreSQL + pgvector image the tests start with Testcontainers, with no registry:
# a Debian bookworm base from debootstrap (`docker import`), then scripts/test-image/Dockerfile
# on it. Does nothing when the image already exists (--force rebuilds it). Needs root, a Docker
# engine (DOCKER_HOST or the default socket), debootstrap, and the Debian mirror.
#
# Env: TEST_PG_IMAGE (default database-test-pgvector:15, the name tests/support/global-setup.ts
#      asks for), TEST_PG_BASE_IMAGE (default database-test-debian:bookworm),
#      DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR (default: the machine's, from /etc/apt/sources.list*).
set -euo pipefail
cd "$(dirname "$0")"

image=${TEST_PG_IMAGE:-database-test-pgvector:15}
base=${TEST_PG_BASE_IMAGE:-database-test-debian:bookworm}
force=false
case "${1:-}" in
  '') ;;
  --force) force=true ;;
  *) printf 'usage: %s [--force]\n' "$0" >&2; exit 2 ;;
esac
log() { printf 'build-test-image: %s\n' "$*" >&2; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }

if ! $force && exists "$image"; then
  log "$image already exists; nothing to do (--force rebuilds it)"
  exit 0
fi

# The first archive URL apt uses for Debian suite $1, in either sources format.
machine_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$1" '
      /^[[:space:]]*deb[[:space:]]/ {
        url = ""
        for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { url = $i; break }
        for (j = i + 1; j <= NF; j++) if ($j == suite && url != "") { print url; exit }
      }
      /^URIs:/ { uri = $2 }
      /^Suites:/ && uri != "" { for (i = 2; i <= NF; i++) if ($i == suite) { print uri; exit } }
      /^[[:space:]]*$/ { uri = "" }
    ' "$f"
  done | head -n1
}

if $force || ! exists "$base"; then
  mirror=${DEBIAN_MIRROR:-$(machine_mirror bookworm)}
  mirror=${mirror:-http://deb.debian.org/debian}
  security=${DEBIAN_SECURITY_MIRROR:-$(machine_mirror bookworm-security)}
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap --variant=minbase bookworm from $mirror"
  start=$SECONDS
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; log "debootstrap failed"; exit 1
  }
  rm -f "$rootfs.log"
  # debootstrap lists bookworm only; the image's packages come with their point and security
  # updates, as the machine's do.
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    if [ -n "$security" ]; then echo "deb $security bookworm-security main"; fi
  } > "$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
  rm -rf "$rootfs"
  log "base image $base imported ($((SECONDS - start)) s)"
fi

log "building $image on $base"
start=$SECONDS
# Host networking: apt in the build talks to the mirror the way the machine does.
docker build --network host --build-arg "BASE_IMAGE=$base" -t "$image" -f test-image/Dockerfile .
log "built $image ($((SECONDS - start)) s)"
