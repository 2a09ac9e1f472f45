#!/bin/sh
# Entrypoint of the tests' PostgreSQL image: honours what the official postgres image's does and
# @testcontainers/postgresql relies on. On an empty $PGDATA: initdb with POSTGRES_USER as the
# superuser and POSTGRES_PASSWORD as its password, password (scram-sha-256) auth for every host
# connection (POSTGRES_HOST_AUTH_METHOD overrides), trust on the local socket, the database
# POSTGRES_DB created; then PostgreSQL listens on 0.0.0.0:5432. Runs the server as postgres.
set -eu

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

log() { printf 'entrypoint: %s\n' "$*" >&2; }
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    log "POSTGRES_PASSWORD is empty: set it, or POSTGRES_HOST_AUTH_METHOD=trust"
    exit 1
  fi
  work=$(mktemp -d)
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" > "$work/pw"
    pwopt="--pwfile=$work/pw"
  else
    pwopt=
  fi
  # shellcheck disable=SC2086 # $pwopt is one word or none
  initdb -D "$PGDATA" --username="$user" $pwopt --auth-local=trust --auth-host="$auth" \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  printf 'host all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    # A server on a private socket only, so nothing (the health check included) sees it.
    pg_ctl -D "$PGDATA" -s -w -o "-c listen_addresses='' -c unix_socket_directories=$work" start
    echo 'create database :"db";' | psql -q -v ON_ERROR_STOP=1 -v db="$db" -h "$work" -U "$user" -d postgres
    pg_ctl -D "$PGDATA" -s -w -m fast stop
  fi
  rm -rf "$work"
  log "initialized $PGDATA: superuser $user, database $db, host auth $auth"
fi

case "${1:-}" in
  -*) set -- postgres "$@" ;;
esac
exec "$@"
