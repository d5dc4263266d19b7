#!/usr/bin/env bash
# A compact re-implementation of the official postgres image's entrypoint (same env contract).
# No -u: sourced initdb.d scripts written for the official image may use unset variables.
set -Eeo pipefail

# The official image's data layout this image follows (PG_LAYOUT in the Dockerfile): 17 or 18.
layout=$(cat /usr/local/share/selfhost/postgres-layout 2>/dev/null || echo 17)

# file_env VAR [DEFAULT]: VAR from the environment or from the file named by VAR_FILE.
file_env() {
  local var=$1 file_var="${1}_FILE" val=${2:-}
  if [[ ${!var:-} && ${!file_var:-} ]]; then
    echo "error: both $var and $file_var are set (but are exclusive)" >&2
    exit 1
  fi
  if [[ ${!var:-} ]]; then
    val=${!var}
  elif [[ ${!file_var:-} ]]; then
    val=$(<"${!file_var}")
  fi
  export "$var=$val"
  unset "$file_var"
}

want_help() {
  local arg
  for arg; do
    case $arg in -'?' | --help | --describe-config | -V | --version | -C | -C*) return 0 ;; esac
  done
  return 1
}

psql_run() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"; }

process_init_files() {
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)
        # shellcheck disable=SC1090
        if [[ -x $f ]]; then echo "$0: running $f"; "$f"
        else echo "$0: sourcing $f"; . "$f"; fi ;;
      *.sql) echo "$0: running $f"; psql_run --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | psql_run --dbname "$POSTGRES_DB" ;;
      *.sql.xz) echo "$0: running $f"; xzcat "$f" | psql_run --dbname "$POSTGRES_DB" ;;
      *.sql.zst) echo "$0: running $f"; zstd -dc "$f" | psql_run --dbname "$POSTGRES_DB" ;;
      */\*) ;;
      *) echo "$0: ignoring $f" ;;
    esac
  done
}

# As the official image does when PGDATA is the layout's default and holds no database yet: a
# database elsewhere under /var/lib/postgresql (an old-layout volume, say) stops the start instead
# of a new empty cluster beside it; from 18 on, so does any mount at /var/lib/postgresql/data.
refuse_old_databases() {
  [[ $PGDATA == "/var/lib/postgresql/$layout/docker" ]] || return 0
  local d old=()
  for d in /var/lib/postgresql /var/lib/postgresql/data /var/lib/postgresql/*/docker; do
    [[ ! -s $d/PG_VERSION ]] || old+=("$d")
  done
  if ((${#old[@]} == 0 && layout >= 18)) && mountpoint -q /var/lib/postgresql/data; then
    old+=('/var/lib/postgresql/data (unused mount/volume)')
  fi
  ((${#old[@]})) || return 0
  echo "error: in the $layout layout the database lives in $PGDATA, inside VOLUME /var/lib/postgresql," >&2
  echo "  but there is PostgreSQL data (or a mount) in: ${old[*]}" >&2
  echo '  Mount one volume at /var/lib/postgresql; move an old database with pg_upgrade or a dump.' >&2
  exit 1
}

init_database() {
  if [[ -z $POSTGRES_PASSWORD && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
    echo 'error: database is uninitialized and superuser password is not specified.' >&2
    echo '  Set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (or POSTGRES_HOST_AUTH_METHOD=trust).' >&2
    exit 1
  fi
  refuse_old_databases
  local args=()
  eval "args=(${POSTGRES_INITDB_ARGS:-})"  # shell-quoted words, as upstream
  [[ -z ${POSTGRES_INITDB_WALDIR:-} ]] || args+=(--waldir "$POSTGRES_INITDB_WALDIR")
  # The password goes through a pipe, never through argv.
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${args[@]}"
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

  # Temporary server on the Unix socket only, so TCP health checks do not see it as ready.
  PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
  export PGPASSWORD=${PGPASSWORD:-$POSTGRES_PASSWORD}
  if [[ $POSTGRES_DB != postgres ]]; then
    psql_run --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  process_init_files
  PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGPASSWORD
  echo "$0: PostgreSQL init process complete; ready for start up."
}

if [[ ${1:0:1} == - ]]; then
  set -- postgres "$@"
fi

if [[ $1 == postgres ]] && ! want_help "$@"; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  export POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 00700 "$PGDATA" 2>/dev/null || :
  chmod 03775 /var/run/postgresql 2>/dev/null || :
  if [[ $(id -u) == 0 ]]; then
    find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres {} +
    # The minimal variants ship gosu (as the official image does) instead of setpriv.
    if command -v gosu >/dev/null; then exec gosu postgres "${BASH_SOURCE[0]}" "$@"; fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
  fi

  if [[ ! -s $PGDATA/PG_VERSION ]]; then
    init_database
  else
    echo "$0: PostgreSQL database directory appears to contain a database; skipping initialization"
  fi
  # Like the official image, the password stays exported (file_env exports it and nothing
  # unsets it before exec): the server keeps it in its environment.
fi

exec "$@"
