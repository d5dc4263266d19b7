#!/usr/bin/env bash
# Smoke test of the stack images and the demo app on this machine's engine (after
# stack-images.sh): postgres, redis and the demo app wired the way the compose file will do it,
# then the minimal variants (postgres:18, redis:8-minimal, nginx:1.26-slim): tools absent,
# entrypoints as in the official images. Everything it creates is named demo-check-* and removed
# at the end. Ports 127.0.0.1:1800x.
source "$(dirname "$0")/../../../scripts/lib.sh"

net=demo-check-net
dir=$(mktemp -d /tmp/demo-check.XXXXXX)
fails=0
cleanup() {
  local ids
  ids=$(docker ps -aq --filter name=demo-check-)
  [[ -z $ids ]] || xargs docker rm -f <<<"$ids" >/dev/null
  docker volume rm demo-check-pgdata demo-check-redisdata demo-check-pg18 demo-check-pg18old \
    demo-check-redisdata-min >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
}
cleanup # leftovers of an interrupted run
trap 'cleanup; rm -rf "$dir"' EXIT

check() { # check DESCRIPTION COMMAND...
  if "${@:2}" >/dev/null 2>&1; then log "ok: $1"; else printf 'FAIL: %s\n' "$1" >&2; fails=$((fails + 1)); fi
}
http_is() { [[ $(curl -s -o /dev/null -w '%{http_code}' "${@:2}") == "$1" ]]; }
body_has() { curl -fsS "${@:2}" | grep -qF -- "$1"; }
lacks_tools() { # lacks_tools IMAGE: curl, wget, setpriv, ps (nor pgrep, top) are commands in it
  docker run --rm --entrypoint sh "$1" -c 'for t in curl wget setpriv ps pgrep top; do
    if command -v "$t"; then exit 1; fi; done'
}
pid1_status() { docker exec "$1" cat /proc/1/status | awk -v f="$2:" '$1 == f { print $2 }'; }
pid1_env_has() { # pid1_env_has CONTAINER USER NAME FILE: NAME=<FILE's content> is in PID 1's env
  docker exec -u "$2" "$1" cat /proc/1/environ | tr '\0' '\n' | grep -qxF -f <(printf '%s=%s\n' "$3" "$(<"$4")")
}
label_is() { [[ $(docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1") == "$3" ]]; }
redis_min_config_is() { # redis_min_config_is NAME VALUE (asked with the password, not in argv)
  [[ $(REDISCLI_AUTH=$(<"$dir/secrets/redis_password") docker exec -e REDISCLI_AUTH demo-check-redis-min \
    redis-cli CONFIG GET "$1" | tail -n 1) == "$2" ]]
}
# old_layout_refused VOLUME:TARGET TEXT: postgres:18 exits 1 before initialising, its error naming TEXT
old_layout_refused() {
  local out rc=0
  out=$(timeout 60 docker run --rm --name demo-check-pg18-refused -e POSTGRES_PASSWORD=unused -v "$1" \
    selfhost/postgres:18 2>&1) || rc=$?
  [[ $rc == 1 ]] && grep -qF -- "$2" <<<"$out"
}
wait_healthy() {
  for _ in $(seq 60); do
    [[ $(docker inspect -f '{{.State.Health.Status}}' "$1") == healthy ]] && return 0
    sleep 1
  done
  return 1
}

mkdir -p "$dir/secrets" "$dir/initdb" "$dir/templates"
for s in db_password redis_password; do
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$dir/secrets/$s"
done
chown 10001:10001 "$dir"/secrets/*
chmod 0400 "$dir"/secrets/*
printf 'CREATE TABLE initdb_marker (at timestamptz DEFAULT now());\nINSERT INTO initdb_marker DEFAULT VALUES;\n' \
  >"$dir/initdb/01-marker.sql"
# shellcheck disable=SC2016  # expanded by the init script
printf '#!/bin/sh\npsql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "INSERT INTO initdb_marker DEFAULT VALUES"\n' \
  >"$dir/initdb/02-marker.sh"
chmod +x "$dir/initdb/02-marker.sh"

docker network create "$net" >/dev/null
secrets=(-v "$dir/secrets/db_password:/run/secrets/db_password:ro"
  -v "$dir/secrets/redis_password:/run/secrets/redis_password:ro")
hardened=(--read-only --tmpfs /tmp --user 10001 --cap-drop ALL --security-opt no-new-privileges)
app_env=(-e DATABASE_HOST=demo-check-postgres -e DATABASE_PORT=5432 -e DATABASE_NAME=app -e DATABASE_USER=app
  -e DATABASE_PASSWORD_FILE=/run/secrets/db_password -e REDIS_HOST=demo-check-redis -e REDIS_PORT=6379
  -e REDIS_PASSWORD_FILE=/run/secrets/redis_password)

docker run -d --name demo-check-postgres --network "$net" -v demo-check-pgdata:/var/lib/postgresql/data \
  "${secrets[@]}" -v "$dir/initdb:/docker-entrypoint-initdb.d:ro" \
  -e POSTGRES_USER=app -e POSTGRES_DB=app -e POSTGRES_PASSWORD_FILE=/run/secrets/db_password \
  -e POSTGRES_INITDB_ARGS='--data-checksums --auth-local=trust' \
  --health-cmd 'pg_isready -h 127.0.0.1 -U app -d app' --health-interval 1s selfhost/postgres:17 >/dev/null
docker run -d --name demo-check-redis --network "$net" -v demo-check-redisdata:/data "${secrets[@]}" \
  --health-cmd 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" redis-cli ping | grep -q PONG' \
  --health-interval 1s selfhost/redis:8 sh -c 'exec docker-entrypoint.sh redis-server - <<EOF
requirepass $(cat /run/secrets/redis_password)
appendonly yes
EOF' >/dev/null
check "postgres healthy" wait_healthy demo-check-postgres
check "redis healthy" wait_healthy demo-check-redis
check "redis-server is PID 1 as redis" bash -c "docker exec demo-check-redis ps -o user=,args= -p 1 | grep -q '^redis *redis-server'"
check "redis refuses without password" bash -c "docker exec demo-check-redis redis-cli ping | grep -q NOAUTH"
check "postgres runs as uid 999" bash -c "docker exec demo-check-postgres ps -o uid= -p 1 | grep -qx ' *999'"
check "initdb args applied" bash -c "docker exec demo-check-postgres psql -U app -d app -tAc 'SHOW data_checksums' | grep -qx on"
check "postgres server has POSTGRES_PASSWORD in /proc/1/environ, as the official image" \
  pid1_env_has demo-check-postgres postgres POSTGRES_PASSWORD "$dir/secrets/db_password"

docker run --rm --network "$net" "${app_env[@]}" "${secrets[@]}" "${hardened[@]}" selfhost/demo-backend:v1 \
  python3 /app/migrate.py >/dev/null
docker run -d --name demo-check-backend --network "$net" "${app_env[@]}" "${secrets[@]}" "${hardened[@]}" \
  --health-interval 1s -p 127.0.0.1:18000:8000 selfhost/demo-backend:v1 >/dev/null
docker run -d --name demo-check-frontend --network "$net" "${hardened[@]}" --health-interval 1s \
  -p 127.0.0.1:18001:8080 selfhost/demo-frontend:v1 >/dev/null
api=http://127.0.0.1:18000/api
check "backend v1 healthy" wait_healthy demo-check-backend
check "frontend v1 healthy" wait_healthy demo-check-frontend
check "health 200" http_is 200 "$api/health"
check "POST item 201" http_is 201 -X POST -d '{"name":"smoke item"}' "$api/items"
check "POST empty name 400" http_is 400 -X POST -d '{"name":" "}' "$api/items"
check "GET items lists it" body_has '"name": "smoke item"' "$api/items"
c1=$(curl -fsS "$api/counter" | tr -dc 0-9)
c2=$(curl -fsS "$api/counter" | tr -dc 0-9)
check "counter increments" test "$((c1 + 1))" = "$c2"
check "frontend shows v1" body_has 'data-version="v1"' http://127.0.0.1:18001/

docker restart demo-check-postgres >/dev/null
check "postgres healthy after restart" wait_healthy demo-check-postgres
check "item survives restart" body_has '"name": "smoke item"' "$api/items"
check "init scripts ran once" bash -c \
  "docker exec demo-check-postgres psql -U app -d app -tAc 'SELECT count(*) FROM initdb_marker' | grep -qx 2"

docker run --rm --network "$net" "${app_env[@]}" "${secrets[@]}" "${hardened[@]}" selfhost/demo-backend:v2 \
  python3 /app/migrate.py >/dev/null
docker run -d --name demo-check-backend-v2 --network "$net" "${app_env[@]}" "${secrets[@]}" "${hardened[@]}" \
  -p 127.0.0.1:18002:8000 selfhost/demo-backend:v2 >/dev/null
docker run -d --name demo-check-backend-broken --network "$net" "${app_env[@]}" "${secrets[@]}" "${hardened[@]}" \
  -p 127.0.0.1:18003:8000 selfhost/demo-backend:broken >/dev/null
sleep 2
check "v2 keeps v1 rows, with created_at" bash -c \
  "curl -fsS http://127.0.0.1:18002/api/items | grep -q '\"name\": \"smoke item\", \"created_at\"'"
check "v1 still works on the v2 schema" http_is 201 -X POST -d '{"name":"v1 on v2"}' "$api/items"
check "v2 version" body_has '"version": "v2"' http://127.0.0.1:18002/api/version
check "broken health 503" http_is 503 http://127.0.0.1:18003/api/health

# The edge proxy, configured the official image's way (a template with env substitution).
# shellcheck disable=SC2016  # ${BACKEND} is for envsubst in the container
printf 'server {\n  listen 80;\n  location /api/ { proxy_pass http://${BACKEND}:8000; }\n  location / { proxy_pass http://${FRONTEND}:8080; }\n}\n' \
  >"$dir/templates/default.conf.template"
docker run -d --name demo-check-nginx --network "$net" -v "$dir/templates:/etc/nginx/templates:ro" \
  -e BACKEND=demo-check-backend -e FRONTEND=demo-check-frontend -p 127.0.0.1:18004:80 selfhost/nginx:1.26 >/dev/null
sleep 1
check "nginx proxies the API" body_has '"status": "ok"' http://127.0.0.1:18004/api/health
check "nginx proxies the frontend" body_has 'data-version="v1"' http://127.0.0.1:18004/

# The minimal variants carry none of the tools the official images lack.
for image in selfhost/postgres:18 selfhost/redis:8-minimal selfhost/nginx:1.26-slim; do
  check "$image: no curl, wget, setpriv, ps" lacks_tools "$image"
done

# postgres:18: the official 18 layout, initialised from a password file; as in the official image
# the password stays in the server's environment.
docker run -d --name demo-check-postgres18 -v demo-check-pg18:/var/lib/postgresql "${secrets[@]}" \
  -v "$dir/initdb:/docker-entrypoint-initdb.d:ro" -e POSTGRES_USER=app -e POSTGRES_DB=app \
  -e POSTGRES_PASSWORD_FILE=/run/secrets/db_password \
  --health-cmd 'pg_isready -h 127.0.0.1 -U app -d app' --health-interval 1s selfhost/postgres:18 >/dev/null
check "postgres 18 healthy" wait_healthy demo-check-postgres18
check "postgres 18 data directory /var/lib/postgresql/18/docker" bash -c \
  "docker exec demo-check-postgres18 psql -U app -d app -tAc 'SHOW data_directory' | grep -qx /var/lib/postgresql/18/docker"
check "postgres 18 PG_VERSION says 17 (Debian's binaries)" bash -c \
  "docker exec demo-check-postgres18 cat /var/lib/postgresql/18/docker/PG_VERSION | grep -qx 17"
check "postgres 18 label selfhost.postgres.layout=18" label_is selfhost/postgres:18 selfhost.postgres.layout 18
check "postgres 18 label selfhost.postgres.major=17" label_is selfhost/postgres:18 selfhost.postgres.major 17
check "postgres 18 runs as uid 999" test "$(pid1_status demo-check-postgres18 Uid)" = 999
check "postgres 18 server has POSTGRES_PASSWORD in /proc/1/environ" \
  pid1_env_has demo-check-postgres18 postgres POSTGRES_PASSWORD "$dir/secrets/db_password"
check "postgres 18 server has postgres' HOME (gosu)" bash -c \
  "docker exec -u postgres demo-check-postgres18 cat /proc/1/environ | tr '\0' '\n' | grep -qx HOME=/var/lib/postgresql"
docker restart demo-check-postgres18 >/dev/null
check "postgres 18 healthy after restart" wait_healthy demo-check-postgres18
check "postgres 18 init scripts ran once" bash -c \
  "docker exec demo-check-postgres18 psql -U app -d app -tAc 'SELECT count(*) FROM initdb_marker' | grep -qx 2"
check "postgres 18 password still in the environment after restart" \
  pid1_env_has demo-check-postgres18 postgres POSTGRES_PASSWORD "$dir/secrets/db_password"
# Like the official 18 image, it refuses to start beside a volume of the old layout.
check "postgres 18 refuses the 17 layout's database at /var/lib/postgresql/data" \
  old_layout_refused demo-check-pgdata:/var/lib/postgresql/data:ro "in: /var/lib/postgresql/data"
check "postgres 18 refuses an empty volume at /var/lib/postgresql/data" \
  old_layout_refused demo-check-pg18old:/var/lib/postgresql/data "/var/lib/postgresql/data (unused mount/volume)"

# redis:8-minimal: a config file as argument, readable only by redis (999, 0400), and only the
# capabilities the entrypoint needs to chown /data and drop to redis.
printf 'requirepass %s\nappendonly yes\n' "$(<"$dir/secrets/redis_password")" >"$dir/redis.conf"
chown 999:999 "$dir/redis.conf"
chmod 0400 "$dir/redis.conf"
docker run --rm -v demo-check-redisdata-min:/data --entrypoint sh selfhost/redis:8-minimal -c 'touch /data/root-owned'
docker run -d --name demo-check-redis-min -v demo-check-redisdata-min:/data \
  -v "$dir/redis.conf:/run/secrets/redis.conf:ro" --cap-drop ALL --cap-add SETUID --cap-add SETGID --cap-add CHOWN \
  --health-cmd 'redis-cli ping | grep -q NOAUTH' --health-interval 1s \
  selfhost/redis:8-minimal redis-server /run/secrets/redis.conf >/dev/null
check "redis minimal healthy" wait_healthy demo-check-redis-min
check "redis minimal: redis-server is PID 1" bash -c "docker exec demo-check-redis-min cat /proc/1/cmdline | tr '\0' ' ' | grep -q '^redis-server '"
check "redis minimal runs as uid 999" test "$(pid1_status demo-check-redis-min Uid)" = 999
check "redis minimal keeps no capabilities" test "$(pid1_status demo-check-redis-min CapEff)" = 0000000000000000
check "redis minimal entrypoint chowned /data" bash -c "docker exec demo-check-redis-min stat -c %u /data/root-owned | grep -qx 999"
check "redis minimal refuses without password" bash -c "docker exec demo-check-redis-min redis-cli ping | grep -q NOAUTH"
check "redis minimal took the config file" redis_min_config_is appendonly yes

# nginx:1.26-slim: the same layout and entrypoint (templates, /docker-entrypoint.d) as nginx:1.26.
docker run -d --name demo-check-nginx-slim --network "$net" -v "$dir/templates:/etc/nginx/templates:ro" \
  -e BACKEND=demo-check-backend -e FRONTEND=demo-check-frontend -p 127.0.0.1:18005:80 selfhost/nginx:1.26-slim >/dev/null
docker run -d --name demo-check-nginx-slim-default -p 127.0.0.1:18006:80 selfhost/nginx:1.26-slim >/dev/null
sleep 1
check "nginx slim proxies the API" body_has '"status": "ok"' http://127.0.0.1:18005/api/health
check "nginx slim serves its default page" body_has 'Welcome to nginx!' http://127.0.0.1:18006/

start=$(date +%s%N)
docker stop demo-check-backend >/dev/null
stop_ms=$((($(date +%s%N) - start) / 1000000))
code=$(docker inspect -f '{{.State.ExitCode}}' demo-check-backend)
check "backend stops within 3 s (took ${stop_ms} ms, exit $code)" test "$stop_ms" -lt 3000 -a "$code" = 0
leaks=0
for c in $(docker ps -aq --filter name=demo-check-); do
  if docker inspect "$c" | grep -qF -f "$dir/secrets/db_password" -f "$dir/secrets/redis_password"; then
    leaks=$((leaks + 1))
  fi
done
check "no password in docker inspect" test "$leaks" = 0

((fails == 0)) || die "$fails smoke checks failed"
log "all smoke checks passed"
