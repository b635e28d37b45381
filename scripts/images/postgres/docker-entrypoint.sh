#!/bin/bash
# Minimal equivalent of the official postgres image's entrypoint:
# initialise PGDATA on first start from POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB, then exec the server as the postgres user.
set -euo pipefail
# as the official image: options alone (-c ...) are options of the server
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = "postgres" ]; then
  if [ "$(id -u)" = "0" ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    exec gosu postgres "$0" "$@"
  fi
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    pwfile="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
      --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    printf "host all all all scram-sha-256\n" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$db" != "postgres" ]; then
      psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres \
        -c "CREATE DATABASE \"$db\"" >/dev/null
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
  fi
  exec postgres -c listen_addresses='*' "${@:2}"
fi
exec "$@"
