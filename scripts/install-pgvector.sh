#!/usr/bin/env bash
# Installs pgvector (>= 0.8) into the PostgreSQL server running on this machine.
#
# Debian bookworm has no pgvector package, so we build it the way pgvector's own README says
# (`make && make install` against the server's pg_config), from Debian's source package taken
# from trixie. apt gets a temporary sources list and lists directory, so the machine's own
# package lists stay bookworm-only. Does nothing when a new enough pgvector is already installed.
#
# Env: PG_MAJOR (default: the running cluster's major version), PGVECTOR_MIN (default 0.8.0).
set -euo pipefail

min_version=${PGVECTOR_MIN:-0.8.0}
log() { printf 'install-pgvector: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_major=${PG_MAJOR:-}
if [ -z "$pg_major" ] && command -v pg_lsclusters >/dev/null; then
  pg_major=$(pg_lsclusters --no-header | awk 'NR==1 {print $1}')
fi
if [ -z "$pg_major" ]; then
  log "cannot tell the PostgreSQL major version: set PG_MAJOR (e.g. PG_MAJOR=15)"
  exit 1
fi

control=/usr/share/postgresql/$pg_major/extension/vector.control
installed_version() {
  [ -f "$control" ] && sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$control"
}
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

current=$(installed_version || true)
if [ -n "$current" ] && version_ge "$current" "$min_version"; then
  log "pgvector $current already installed for PostgreSQL $pg_major; nothing to do"
  exit 0
fi

log "installing build dependencies for PostgreSQL $pg_major"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends \
  "postgresql-server-dev-$pg_major" build-essential dpkg-dev >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt downloads as the _apt user
mkdir -p "$work/lists/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  > "$work/sources.list"
apt_tmp=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
         -o "Dir::State::Lists=$work/lists")

log "fetching Debian's pgvector source package (trixie)"
apt-get "${apt_tmp[@]}" update -qq
(cd "$work" && apt-get "${apt_tmp[@]}" source -qq pgvector >/dev/null)
src=$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
[ -n "$src" ] || { log "apt-get source pgvector produced no source tree"; exit 1; }

log "building $(basename "$src") against /usr/lib/postgresql/$pg_major/bin/pg_config"
# with_llvm=no: skip the JIT bitcode, which would need clang; the extension itself is unaffected.
make -s -C "$src" PG_CONFIG="/usr/lib/postgresql/$pg_major/bin/pg_config" with_llvm=no OPTFLAGS="" -j"$(nproc)"
as_root make -s -C "$src" PG_CONFIG="/usr/lib/postgresql/$pg_major/bin/pg_config" with_llvm=no install

current=$(installed_version || true)
if [ -z "$current" ] || ! version_ge "$current" "$min_version"; then
  log "pgvector install finished but $control reports '${current:-nothing}', need >= $min_version"
  exit 1
fi
log "pgvector $current installed for PostgreSQL $pg_major"
