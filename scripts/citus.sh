#!/usr/bin/env bash
# A three-node Citus cluster on this machine: a coordinator and two workers on loopback ports,
# for the tests and the benchmark (README, "Citus: scaling out").
#
#   bash scripts/citus.sh install   build and install Citus 13.2.2 into the local PostgreSQL
#   bash scripts/citus.sh up        install if needed, then create and start the three nodes
#   bash scripts/citus.sh down      stop the nodes (by the pids their postmaster.pid files hold)
#   bash scripts/citus.sh url       print the coordinator's URL (for TEST_DATABASE_URL)
#
# Citus is not packaged in Debian and no network but Debian's and npm's is reachable, so it is
# built from the vendored source (../shared/vendor/citus-13.2.2.tar.gz; 13.x is the last line
# that supports PostgreSQL 15). Citus 13.2.2 does not compile against PostgreSQL 15.20's headers
# as released: pg_version_compat.h defines a static have_createdb_privilege(), which 15.20 now
# declares and exports itself ("static declaration follows non-static declaration"). The build
# guards that compat definition for 15.20 and later.
#
# The nodes run as the `postgres` OS user from the machine's PostgreSQL binaries, in CITUS_DIR
# (default /tmp/citus-cluster), ports CITUS_PORT (default 9700, the coordinator) and the next two,
# trust auth on 127.0.0.1 only. The machine's own cluster on 5432 is never touched.
#
# Settings, each because something failed without it:
#   shared_preload_libraries=citus      Citus must load at start.
#   citus.propagate_set_commands=local  SET LOCAL reaches the workers (the tenant context; README).
#   max_prepared_transactions           multi-shard writes commit with two-phase commit.
#   max_worker_processes=64             Citus's maintenance daemon takes one per database, and the
#                                       tests make one database per test file (default 8 ran out).
#   jit=off                             every distributed plan was JIT-compiled: 83% of the CPU.
#   wal_level=logical                   undistributing tables (0020's down) needs it.
set -euo pipefail

version=13.2.2
# The vendored source: CITUS_TARBALL, else ../shared/vendor beside the checkout, else /work/shared/vendor.
tarball=${CITUS_TARBALL:-}
if [ -z "$tarball" ]; then
  for candidate in "$(cd "$(dirname "$0")/.." && pwd)/../shared/vendor/citus-$version.tar.gz" "/work/shared/vendor/citus-$version.tar.gz"; do
    if [ -f "$candidate" ]; then tarball=$candidate; break; fi
  done
fi
dir=${CITUS_DIR:-/tmp/citus-cluster}
port=${CITUS_PORT:-9700}
ports=("$port" "$((port + 1))" "$((port + 2))")
log() { printf 'citus: %s\n' "$*" >&2; }

pg_major() {
  local major=${PG_MAJOR:-}
  [ -n "$major" ] || major=$(pg_lsclusters --no-header | awk 'NR==1 {print $1}')
  echo "$major"
}
bindir() { echo "/usr/lib/postgresql/$(pg_major)/bin"; }
as_postgres() { runuser -u postgres -- "$@"; }

installed() {
  local control
  control="/usr/share/postgresql/$(pg_major)/extension/citus.control"
  [ -f "$control" ] && grep -q "default_version = '13.2" "$control"
}

install() {
  if installed; then log "Citus $version already installed"; return; fi
  local major; major=$(pg_major)
  [ -n "$tarball" ] && [ -f "$tarball" ] || { log "no Citus source (../shared/vendor/citus-$version.tar.gz): set CITUS_TARBALL"; exit 1; }
  log "installing build dependencies"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "postgresql-server-dev-$major" build-essential \
    libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev libselinux1-dev libxslt1-dev \
    libpam0g-dev libreadline-dev zlib1g-dev flex bison >/dev/null
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  tar xzf "$tarball" -C "$work"
  local src="$work/citus-$version"
  perl -0pi -e 's/(static inline bool\nhave_createdb_privilege\(void\)\n\{.*?\n\}\n)/#if PG_VERSION_NUM < 150020\n$1#endif\n/s' \
    "$src/src/include/pg_version_compat.h"
  grep -q 'PG_VERSION_NUM < 150020' "$src/src/include/pg_version_compat.h" \
    || { log "the PostgreSQL 15.20 patch did not apply to pg_version_compat.h"; exit 1; }
  log "building Citus $version against $(bindir)/pg_config"
  (cd "$src" && ./configure -q PG_CONFIG="$(bindir)/pg_config" >/dev/null && make -s -j"$(nproc)" >/dev/null && make -s install >/dev/null)
  installed || { log "make install finished but citus.control is not version $version"; exit 1; }
  log "Citus $version installed for PostgreSQL $major"
}

node_dir() { echo "$dir/node-$1"; }
psql_on() { local p=$1; shift; "$(bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$p" -U postgres -d postgres "$@"; }

up() {
  install
  mkdir -p "$dir"
  chown postgres: "$dir"
  for p in "${ports[@]}"; do
    local d; d=$(node_dir "$p")
    if [ ! -f "$d/PG_VERSION" ]; then
      as_postgres "$(bindir)/initdb" -D "$d" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
      cat >>"$d/postgresql.conf" <<EOF
port = $p
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'citus'
citus.propagate_set_commands = 'local'
max_connections = 300
max_prepared_transactions = 300
max_worker_processes = 64
jit = off
wal_level = logical
fsync = off
EOF
    fi
    if [ -f "$d/postmaster.pid" ] && as_postgres "$(bindir)/pg_ctl" -D "$d" status >/dev/null 2>&1; then
      continue # this node runs already
    fi
    if "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$p"; then
      log "port $p is taken by a server that is not this cluster's ($d): stop it, or set CITUS_PORT"
      exit 1
    fi
    as_postgres "$(bindir)/pg_ctl" -D "$d" -l "$d/server.log" -w start >/dev/null
  done
  # (Not `create extension if not exists`: once a worker holds Citus metadata, Citus refuses
  # CREATE EXTENSION there even when it would skip.)
  for p in "${ports[@]}"; do
    if [ -z "$(psql_on "$p" -At -c "select 1 from pg_extension where extname = 'citus'")" ]; then
      psql_on "$p" -c 'create extension citus'
    fi
  done
  # The coordinator in the metadata too (Citus's recommendation: locks taken from the workers
  # reach it, and reference tables get a copy on it), then the workers.
  psql_on "${ports[0]}" -c "select citus_set_coordinator_host('127.0.0.1', ${ports[0]})" >/dev/null
  for p in "${ports[@]:1}"; do
    psql_on "${ports[0]}" -c "select citus_add_node('127.0.0.1', $p) where not exists (select from pg_dist_node where nodeport = $p)" >/dev/null
  done
  log "coordinator and workers on ports ${ports[*]}; the coordinator's URL:"
  url
}

down() {
  for p in "${ports[@]}"; do
    local d; d=$(node_dir "$p")
    if [ -f "$d/postmaster.pid" ]; then as_postgres "$(bindir)/pg_ctl" -D "$d" -m fast -w stop >/dev/null || true; fi
  done
  log "stopped"
}

url() { echo "postgres://postgres@127.0.0.1:${ports[0]}/postgres"; }

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  url) url ;;
  *) echo "usage: $0 install|up|down|url" >&2; exit 2 ;;
esac
