#!/usr/bin/env bash
# Entry point of the local stand-in for the official `postgres` image
# (docker/base/Dockerfile.postgres, built by scripts/base-images). It follows the same
# interface, as far as docker/compose.yaml and the tests use it:
#   - POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required unless
#     POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: POSTGRES_USER),
#     POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256);
#   - on an empty $PGDATA (under the volume /var/lib/postgresql): initdb, then a temporary
#     server listening on the unix socket only runs /docker-entrypoint-initdb.d/* once
#     (*.sh: executed if executable, else sourced; *.sql, *.sql.gz, *.sql.xz: psql);
#   - then `postgres` in the foreground on port 5432, all interfaces; TCP needs a password
#     (POSTGRES_HOST_AUTH_METHOD), local socket and loopback connections are trusted, as
#     in the official image.
# Started as root, it fixes the ownership of $PGDATA and re-executes itself as `postgres`.
set -Eeuo pipefail

log() { echo "postgres-entrypoint: $*"; }

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

# Anything but the server (psql, bash, pg_dump ...) runs as asked.
if [ "$1" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

run_init_files() {
  local file
  local psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" --dbname "$POSTGRES_DB")
  for file in /docker-entrypoint-initdb.d/*; do
    [ -e "$file" ] || continue
    case "$file" in
      *.sh)
        if [ -x "$file" ]; then
          log "running $file"
          "$file"
        else
          log "sourcing $file"
          # shellcheck disable=SC1090
          . "$file"
        fi
        ;;
      *.sql)
        log "running $file"
        "${psql[@]}" -f "$file"
        ;;
      *.sql.gz)
        log "running $file"
        gunzip -c "$file" | "${psql[@]}"
        ;;
      *.sql.xz)
        log "running $file"
        xz -dc "$file" | "${psql[@]}"
        ;;
      *) log "ignoring $file" ;;
    esac
  done
}

initialise() {
  local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "postgres-entrypoint: error: the database is uninitialised and POSTGRES_PASSWORD is not set; set it (or POSTGRES_HOST_AUTH_METHOD=trust, for throwaway use only)" >&2
    exit 1
  fi
  log "initialising $PGDATA (user $POSTGRES_USER)"
  local pwfile
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as in the official image
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=trust \
    --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
  rm -f "$pwfile"
  # The official image's pg_hba.conf: trust on the socket and loopback (initdb's
  # defaults above), the password method for everything else.
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # A temporary server on the unix socket only: nothing outside the container can connect
  # (or pass a TCP health check) until the init files have run.
  PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  export PGPASSWORD=${POSTGRES_PASSWORD:-}
  if [ "$POSTGRES_DB" != postgres ]; then
    log "creating database $POSTGRES_DB"
    psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" --dbname postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  run_init_files
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop
  log "initialisation complete; starting the server"
}

export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initialise
fi
exec "$@"
