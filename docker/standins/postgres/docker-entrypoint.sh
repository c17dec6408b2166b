#!/bin/sh
# Entry point of the postgres:15 stand-in (see its Dockerfile). For `postgres`: as root, owns the
# data directory to the postgres user and re-executes itself as that user; on the first start
# (no PG_VERSION in PGDATA) creates the cluster with POSTGRES_USER as superuser and
# POSTGRES_PASSWORD, then POSTGRES_DB. Any other command runs as given.
set -eu

if [ "${1:-}" = "postgres" ]; then
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
  fi

  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set on the first start}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    if [ "$db" != "postgres" ]; then
      # A private socket directory and no TCP: neither pg_isready (the healthcheck) nor a client
      # sees this temporary server as ready before the database exists.
      initsock="$(mktemp -d)"
      pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $initsock" -w start
      # From stdin, where psql quotes the name (-c does no variable interpolation).
      echo 'CREATE DATABASE :"db";' \
        | psql -v ON_ERROR_STOP=1 -h "$initsock" -U "$user" -d postgres --set=db="$db"
      pg_ctl -D "$PGDATA" -m fast -w stop
      rmdir "$initsock"
    fi
  fi
fi

exec "$@"
