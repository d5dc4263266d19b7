#!/usr/bin/env bash
# Smoke test of the stack images and the demo app on this machine's engine (after
# stack-images.sh): postgres, redis and the demo app wired the way the compose file will do it.
# Everything it creates is named demo-check-* and removed at the end. Ports 127.0.0.1:1800x.
source "$(dirname "$0")/../../../scripts/lib.sh"

net=demo-check-net
dir=$(mktemp -d /tmp/demo-check.XXXXXX)
fails=0
cleanup() {
  local ids
  ids=$(docker ps -aq --filter name=demo-check-)
  [[ -z $ids ]] || xargs docker rm -f <<<"$ids" >/dev/null
  docker volume rm demo-check-pgdata demo-check-redisdata >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
}
cleanup # leftovers of an interrupted run
trap 'cleanup; rm -rf "$dir"' EXIT

check() { # check DESCRIPTION COMMAND...
  if "${@:2}" >/dev/null 2>&1; then log "ok: $1"; else printf 'FAIL: %s\n' "$1" >&2; fails=$((fails + 1)); fi
}
http_is() { [[ $(curl -s -o /dev/null -w '%{http_code}' "${@:2}") == "$1" ]]; }
body_has() { curl -fsS "${@:2}" | grep -qF -- "$1"; }
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
