#!/usr/bin/env bash
# Smoke test of the fastapi-shop images on this machine's engine (after
# tests/harness/example-images.sh): PostgreSQL, Redis, the API and the edge Nginx on one
# user-defined network, wired and hardened the way the app role will do it (read-only root,
# no capabilities, the images' own user; DATABASE_URL, REDIS_URL and SECRET_KEY in the
# environment). Every endpoint is asked with curl from this machine: 127.0.0.1:18180 is the
# edge, 127.0.0.1:18181 the API directly. Everything it creates is named shop-check-* and is
# removed at the end. Usage: examples/fastapi-shop/smoke-test.sh
source "$(dirname "$0")/../../scripts/lib.sh"

net=shop-check-net
dir=$(mktemp -d /tmp/shop-check.XXXXXX)
fails=0
checks=0
cleanup() {
  local ids
  ids=$(docker ps -aq --filter name='^shop-check-')
  [[ -z $ids ]] || xargs docker rm -f -v <<<"$ids" >/dev/null
  docker volume rm shop-check-pgdata >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
}
cleanup # leftovers of an interrupted run
trap 'cleanup; rm -rf "$dir"' EXIT

check() { # check DESCRIPTION COMMAND...
  checks=$((checks + 1))
  if "${@:2}" >/dev/null 2>&1; then log "ok: $1"; else printf 'FAIL: %s\n' "$1" >&2; fails=$((fails + 1)); fi
}
http_is() { [[ $(curl -s -o /dev/null -w '%{http_code}' "${@:2}") == "$1" ]]; }
body_has() { curl -sS "${@:2}" | grep -qF -- "$1"; }
wait_health() { # wait_health CONTAINER STATUS
  for _ in $(seq 60); do
    [[ $(docker inspect -f '{{.State.Health.Status}}' "$1") == "$2" ]] && return 0
    sleep 1
  done
  return 1
}
pid1_uid() { docker exec "$1" awk '/^Uid:/ { print $2 }' /proc/1/status; }
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
export -f pid1_uid json

pg_password=$(openssl rand -hex 16)
redis_password=$(openssl rand -hex 16)
secret_key=$(openssl rand -hex 24)
edge=http://127.0.0.1:18180
direct=http://127.0.0.1:18181
# The role's edge site, in short: /api/ to the API pool with the proxy headers of
# roles/app/templates/proxy_headers.inc.j2 (Host with its port, X-Forwarded-*); every other
# path from the edge image's own /usr/share/nginx/html (Debian nginx's default root).
cat >"$dir/site.conf" <<'NGINX'
upstream api_pool { server shop-check-api:8000; }
server {
    listen 80 default_server;
    location = /healthz { default_type text/plain; return 200 "ok\n"; }
    location /api/ {
        proxy_pass http://api_pool;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }
}
NGINX

docker network create "$net" >/dev/null
hardened=(--read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges)
app_env=(-e "DATABASE_URL=postgresql://shop:$pg_password@shop-check-postgres:5432/shop"
  -e "REDIS_URL=redis://:$redis_password@shop-check-redis:6379/0" -e "SECRET_KEY=$secret_key")

docker run -d --name shop-check-postgres --network "$net" -v shop-check-pgdata:/var/lib/postgresql/data \
  -e POSTGRES_USER=shop -e POSTGRES_DB=shop -e "POSTGRES_PASSWORD=$pg_password" \
  --health-cmd 'pg_isready -h 127.0.0.1 -U shop -d shop' --health-interval 1s selfhost/postgres:17 >/dev/null
start_redis() {
  docker run -d --name shop-check-redis --network "$net" -e "PW=$redis_password" \
    --health-cmd 'REDISCLI_AUTH="$PW" redis-cli ping | grep -q PONG' --health-interval 1s selfhost/redis:8 \
    sh -c 'exec docker-entrypoint.sh redis-server - <<EOF
requirepass $PW
EOF' >/dev/null
}
start_redis
check "postgres healthy" wait_health shop-check-postgres healthy
check "redis healthy" wait_health shop-check-redis healthy

# --- the images themselves -----------------------------------------------------------------
for image in selfhost/fastapi-shop-api:v1 selfhost/fastapi-shop-api:v2 selfhost/fastapi-shop-api:broken; do
  check "$image: USER 1000:1000, no entrypoint" \
    bash -c "[[ \$(docker image inspect -f '{{.Config.User}} {{json .Config.Entrypoint}}' $image) == '1000:1000 null' ]]"
  check "$image: no curl, no wget" docker run --rm "$image" sh -c '! command -v curl && ! command -v wget'
done
check "a missing SECRET_KEY stops the API with the variable's name" bash -c \
  "docker run --rm ${hardened[*]} -e DATABASE_URL=postgresql://x@h/x -e REDIS_URL=redis://h selfhost/fastapi-shop-api:v1 2>&1 |
   grep -q 'SECRET_KEY is not set'"

# --- migrations: alembic upgrade head, twice at once (the advisory lock serialises them) -----
migrate() { docker run --rm --network "$net" "${app_env[@]}" "${hardened[@]}" "selfhost/fastapi-shop-api:$1" alembic upgrade head; }
migrate v1 >"$dir/m1.log" 2>&1 &
m1=$!
migrate v1 >"$dir/m2.log" 2>&1 &
m2=$!
both_ok() { wait "$m1" && wait "$m2"; }
check "two concurrent 'alembic upgrade head' both succeed" both_ok
check "exactly one of them applied 0001 and 0002" bash -c "[[ \$(cat $dir/m1.log $dir/m2.log | grep -c 'Running upgrade') == 2 ]]"
check "the schema is at 0002" bash -c "docker exec shop-check-postgres psql -U shop -d shop -tAc 'SELECT version_num FROM alembic_version' | grep -qx 0002"
noop() { migrate v2 >"$dir/m3.log" 2>&1 && ! grep -q 'Running upgrade' "$dir/m3.log"; }
check "a later run (v2) has nothing to do" noop

# --- v1: the API behind the edge -------------------------------------------------------------
docker run -d --name shop-check-api --network "$net" "${app_env[@]}" "${hardened[@]}" --health-interval 1s \
  -p 127.0.0.1:18181:8000 selfhost/fastapi-shop-api:v1 >/dev/null
docker run -d --name shop-check-edge --network "$net" --read-only --cap-drop ALL \
  --cap-add CHOWN --cap-add SETUID --cap-add SETGID --cap-add NET_BIND_SERVICE --security-opt no-new-privileges \
  --tmpfs /var/cache/nginx --tmpfs /var/lib/nginx --tmpfs /var/log/nginx --tmpfs /run --tmpfs /tmp \
  -v "$dir/site.conf:/etc/nginx/conf.d/default.conf:ro" -p 127.0.0.1:18180:80 selfhost/fastapi-shop-edge:v1 >/dev/null
check "api v1 healthy (the image's HEALTHCHECK, python3)" wait_health shop-check-api healthy
check "api runs as uid 1000 (PID 1)" bash -c "[[ \$(pid1_uid shop-check-api) == 1000 ]]"
check "gunicorn with uvicorn workers" bash -c "docker logs shop-check-api 2>&1 | grep -q 'Using worker: uvicorn.workers.UvicornWorker'"
check "GET /health (direct) 200 v1" body_has '"status":"ok","version":"v1"' "$direct/health"
check "GET /api/health (edge) 200 v1" body_has '"version":"v1"' "$edge/api/health"
check "edge serves the page v1" body_has '<title>fastapi-shop v1</title>' "$edge/"
asset=$(curl -fsS "$edge/" | grep -o 'app\.[0-9a-f]*\.js')
check "edge serves the hashed script $asset" body_has 'fetch(path' "$edge/$asset"
check "edge /version.json" body_has '{"version":"v1"}' "$edge/version.json"
check "GET /api/items empty" body_has '{"items":[]}' "$edge/api/items"
created=$(curl -fsS -X POST -H 'Content-Type: application/json' -d '{"name":"  apple  "}' "$edge/api/items")
want=$(printf '%s' "1:apple" | openssl dgst -sha256 -hmac "$secret_key" | awk '{ print $NF }')
check "POST /api/items 201, name trimmed, receipt = HMAC(SECRET_KEY)" \
  bash -c "[[ '$created' == '{\"id\":1,\"name\":\"apple\",\"receipt\":\"$want\"}' ]]"
check "GET /api/items lists it (cache miss)" bash -c "curl -fsSi $edge/api/items | tr -d '\r' | grep -qi '^x-cache: miss' "
check "GET /api/items again (cache hit)" bash -c "curl -fsSi $edge/api/items | tr -d '\r' | grep -qi '^x-cache: hit'"
check "v1 items have no created_at" body_has '{"items":[{"id":1,"name":"apple"}]}' "$edge/api/items"
check "POST with a bad body 422" http_is 422 -X POST -H 'Content-Type: application/json' -d '{"name":""}' "$edge/api/items"
check "POST with a foreign Origin 403" http_is 403 -X POST -H 'Origin: https://evil.example' \
  -H 'Content-Type: application/json' -d '{"name":"x"}' "$edge/api/items"
check "POST with a foreign Origin 403 (direct)" http_is 403 -X POST -H 'Origin: http://127.0.0.1:9999' \
  -H 'Content-Type: application/json' -d '{"name":"x"}' "$direct/api/items"
check "POST with the page's own Origin 201 (edge)" http_is 201 -X POST \
  -H "Origin: $edge" -H 'Content-Type: application/json' -d '{"name":"pear"}' "$edge/api/items"
check "POST with the right host but another port 403 (edge)" http_is 403 -X POST -H 'Origin: http://127.0.0.1:9999' \
  -H 'Content-Type: application/json' -d '{"name":"x"}' "$edge/api/items"
check "POST with the page's own Origin 201 (direct)" http_is 201 -X POST \
  -H "Origin: $direct" -H 'Content-Type: application/json' -d '{"name":"plum"}' "$direct/api/items"
check "GET /api/counter counts" bash -c "a=\$(curl -fsS $edge/api/counter); b=\$(curl -fsS $edge/api/counter);
  [[ \${a//[^0-9]/} -eq 1 && \${b//[^0-9]/} -eq 2 ]]"
who=$(curl -fsS "$edge/api/whoami")
log "whoami through the edge: $who"
check "whoami (edge): Host with its port" bash -c "[[ \$(json 'd[\"host\"]' <<<'$who') == 127.0.0.1:18180 ]]"
check "whoami (edge): X-Forwarded-Proto http, scheme http" bash -c \
  "[[ \$(json 'd[\"x_forwarded_proto\"], d[\"scheme\"]' <<<'$who') == \"('http', 'http')\" ]]"
check "whoami (edge): client = the address Nginx saw (X-Real-IP)" bash -c \
  "[[ \$(json 'd[\"client\"] == d[\"x_real_ip\"] != None' <<<'$who') == True ]]"
who=$(curl -fsS -H 'X-Forwarded-Proto: https' -H 'X-Forwarded-For: 198.51.100.7' -H 'Host: shop.example.com' "$direct/api/whoami")
check "whoami (direct, forwarded headers trusted): https, 198.51.100.7, shop.example.com" bash -c \
  "[[ \$(json 'd[\"scheme\"], d[\"client\"], d[\"host\"]' <<<'$who') == \"('https', '198.51.100.7', 'shop.example.com')\" ]]"
check "unknown API path 404" http_is 404 "$edge/api/nope"

# --- Redis away: health says so, reads still work, writes that need it answer 503 ---------------
docker rm -f -v shop-check-redis >/dev/null
check "redis down: /api/health 503 naming redis" bash -c "curl -sS $edge/api/health | grep -q '\"redis\":\"error: '"
check "redis down: GET /api/items still 200 (cache bypassed)" http_is 200 "$edge/api/items"
check "redis down: GET /api/counter 503" http_is 503 "$edge/api/counter"
start_redis
check "redis back: healthy again" bash -c "for i in \$(seq 20); do curl -fsS $edge/api/health >/dev/null && exit 0; sleep 1; done; exit 1"

# --- the way the role starts it: its own wrapper (roles/app/files/with-secrets) exports the
# secret files (0400, owned by the image's uid) into the environment; its probe is the healthcheck.
mkdir -p "$dir/secrets"
printf '%s\n' "postgresql://shop:$pg_password@shop-check-postgres:5432/shop" >"$dir/secrets/database_url"
printf '%s\n' "redis://:$redis_password@shop-check-redis:6379/0" >"$dir/secrets/redis_url"
printf '%s\n' "$secret_key" >"$dir/secrets/secret_key"
chown 1000:1000 "$dir"/secrets/*
chmod 0400 "$dir"/secrets/*
docker run -d --name shop-check-wrapped --network "$net" "${hardened[@]}" -v "$dir/secrets:/run/secrets:ro" \
  -v "$SELFHOST_ROOT/roles/app/files:/selfhost:ro" -e 'SELFHOST_SECRET_ENV=DATABASE_URL=database_url REDIS_URL=redis_url SECRET_KEY=secret_key' \
  --entrypoint /bin/sh --health-cmd '/bin/sh /selfhost/probe http 8000 /health' --health-interval 1s \
  selfhost/fastapi-shop-api:v2 /selfhost/with-secrets gunicorn --config /app/gunicorn.conf.py shop.main:app >/dev/null
check "role's wrapper and probe: healthy" wait_health shop-check-wrapped healthy
check "role's wrapper: the secrets are not in the container's config" bash -c \
  "! docker inspect shop-check-wrapped | grep -qF '$secret_key'"
check "role's wrapper: migrations the same way" docker run --rm --network "$net" "${hardened[@]}" -v "$dir/secrets:/run/secrets:ro" \
  -v "$SELFHOST_ROOT/roles/app/files:/selfhost:ro" -e 'SELFHOST_SECRET_ENV=DATABASE_URL=database_url' \
  --entrypoint /bin/sh selfhost/fastapi-shop-api:v2 /selfhost/with-secrets alembic upgrade head
docker rm -f -v shop-check-wrapped >/dev/null

# --- graceful stop, then v2 in its place ------------------------------------------------------
start=$(date +%s%N)
docker stop -t 30 shop-check-api >/dev/null
check "SIGTERM: exit 0 within 5 s" bash -c "[[ \$(docker inspect -f '{{.State.ExitCode}}' shop-check-api) == 0 &&
  \$(( ($(date +%s%N) - $start) / 1000000 )) -lt 5000 ]]"
docker rm -f shop-check-api shop-check-edge >/dev/null
migrate v2 >/dev/null 2>&1
docker run -d --name shop-check-api --network "$net" "${app_env[@]}" "${hardened[@]}" --health-interval 1s \
  -p 127.0.0.1:18181:8000 selfhost/fastapi-shop-api:v2 >/dev/null
docker run -d --name shop-check-edge --network "$net" --read-only --cap-drop ALL \
  --cap-add CHOWN --cap-add SETUID --cap-add SETGID --cap-add NET_BIND_SERVICE --security-opt no-new-privileges \
  --tmpfs /var/cache/nginx --tmpfs /var/lib/nginx --tmpfs /var/log/nginx --tmpfs /run --tmpfs /tmp \
  -v "$dir/site.conf:/etc/nginx/conf.d/default.conf:ro" -p 127.0.0.1:18180:80 selfhost/fastapi-shop-edge:v2 >/dev/null
check "api v2 healthy" wait_health shop-check-api healthy
check "GET /api/health v2" body_has '"version":"v2"' "$edge/api/health"
check "edge serves the page v2" body_has '<title>fastapi-shop v2</title>' "$edge/"
check "v2 items carry created_at (also the rows v1 wrote)" bash -c \
  "[[ \$(curl -fsS $edge/api/items | json 'all(\"created_at\" in i for i in d[\"items\"]) and len(d[\"items\"]) == 3') == True ]]"
check "X-App-Version: v2" bash -c "curl -fsSi $edge/api/items | tr -d '\r' | grep -qix 'x-app-version: v2'"

# --- broken: everything answers except the health check -------------------------------------------
docker rm -f shop-check-api >/dev/null
docker run -d --name shop-check-api --network "$net" "${app_env[@]}" "${hardened[@]}" --health-interval 1s \
  --health-retries 2 -p 127.0.0.1:18181:8000 selfhost/fastapi-shop-api:broken >/dev/null
check "api broken: container unhealthy" wait_health shop-check-api unhealthy
check "api broken: /health 503 naming the build" bash -c "curl -sS $direct/health | grep -q 'broken on purpose'"
check "api broken: /api/items still 200" http_is 200 "$edge/api/items"

if ((fails)); then
  docker logs shop-check-api >"$dir/../shop-check-api.log" 2>&1 || true
  die "$fails of $checks checks failed (API log: /tmp/shop-check-api.log)"
fi
log "fastapi-shop: $checks checks passed"
echo "$checks passed, 0 failed"
