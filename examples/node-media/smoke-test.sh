#!/usr/bin/env bash
# Smoke test of the node-media images on this machine's engine (after
# tests/harness/example-images.sh): Redis (with a password), the API, the WebSocket service, the
# worker, the web frontend and an edge Nginx (selfhost/nginx:1.26 with a site like the app
# role's: / to web, /api/ to api, /ws/ to ws as WebSocket) on one user-defined network,
# hardened the way the role will run them (read-only root, no capabilities, the images' own
# user, REDIS_URL in the environment); uploads on a named volume shared by api and worker.
# Asked with curl and ws-client.py from this machine: 127.0.0.1:18280 is the edge, 18281 the
# API directly. Everything it creates is named node-check-* and is removed at the end.
# Usage: examples/node-media/smoke-test.sh
source "$(dirname "$0")/../../scripts/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
net=node-check-net
vol=node-check-uploads
dir=$(mktemp -d /tmp/node-check.XXXXXX)
fails=0
checks=0
cleanup() {
  local ids
  ids=$(docker ps -aq --filter name='^node-check-')
  [[ -z $ids ]] || xargs docker rm -f -v <<<"$ids" >/dev/null
  docker volume rm "$vol" >/dev/null 2>&1 || true
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
wait_health() { # wait_health CONTAINER STATUS [SECONDS]
  for _ in $(seq "${3:-60}"); do
    [[ $(docker inspect -f '{{.State.Health.Status}}' "$1") == "$2" ]] && return 0
    sleep 1
  done
  return 1
}
pid1_uid() { docker exec "$1" awk '/^Uid:/ { print $2 }' /proc/1/status; }
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
rcli() { docker exec -e "REDISCLI_AUTH=$redis_password" node-check-redis redis-cli --no-raw "$@"; }
status_of() { curl -fsS "$edge/api/uploads/$1/status" | json 'd["status"]'; }
wait_status() { # wait_status ID STATUS
  for _ in $(seq 40); do
    [[ $(status_of "$1") == "$2" ]] && return 0
    sleep 0.5
  done
  return 1
}
upload() { # upload FILE [CURL ARGS...]: prints the new upload's id
  curl -fsS -X POST --data-binary "@$1" -H "X-Filename: $(basename "$1")" "${@:2}" "$edge/api/uploads" | json 'd["id"]'
}
export -f pid1_uid json status_of

redis_password=$(openssl rand -hex 16)
edge=http://127.0.0.1:18280
direct=http://127.0.0.1:18281
export edge direct
hardened=(--read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges --health-interval 1s)
app_env=(-e "REDIS_URL=redis://:$redis_password@node-check-redis:6379/0")
# The role's proxy headers (roles/app/templates/proxy_headers.inc.j2), included in every
# location as the role does (a location's own proxy_set_header drops the server's).
cat >"$dir/proxy_headers.inc" <<'NGINX'
proxy_http_version 1.1;
proxy_set_header Host $http_host;
proxy_set_header X-Forwarded-Host $http_host;
proxy_set_header X-Real-IP $remote_addr;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
NGINX
cat >"$dir/site.conf" <<'NGINX'
map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
upstream web_pool { server node-check-web:8080; }
upstream api_pool { server node-check-api:3000; }
upstream ws_pool { server node-check-ws:8090; }
server {
    listen 80 default_server;
    client_max_body_size 20m;
    location = /healthz { default_type text/plain; return 200 "ok\n"; }
    location /api/ {
        proxy_pass http://api_pool;
        include /etc/nginx/conf.d/proxy_headers.inc;
        proxy_set_header Connection "";
    }
    location /ws/ {
        proxy_pass http://ws_pool;
        include /etc/nginx/conf.d/proxy_headers.inc;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout 1h;
    }
    location / {
        proxy_pass http://web_pool;
        include /etc/nginx/conf.d/proxy_headers.inc;
        proxy_set_header Connection "";
    }
}
NGINX
# A 3x2 PNG, a text file and an 11 MiB file.
python3 - "$dir" <<'PY'
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))
raw = b"".join(b"\x00" + bytes([255, 0, 0] * 3) for _ in range(2))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack("!IIBBBBB", 3, 2, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1] + "/pixel.png", "wb").write(png)
open(sys.argv[1] + "/notes.txt", "w").write("first line\nsecond line\nthird line\n")
open(sys.argv[1] + "/big.bin", "wb").write(b"\x01" * (11 * 1024 * 1024))
PY

docker network create "$net" >/dev/null
start_redis() {
  docker run -d --name node-check-redis --network "$net" -e "PW=$redis_password" \
    --health-cmd 'REDISCLI_AUTH="$PW" redis-cli ping | grep -q PONG' --health-interval 1s selfhost/redis:8 \
    sh -c 'exec docker-entrypoint.sh redis-server - <<EOF
requirepass $PW
EOF' >/dev/null
}
# start SERVICE VERSION [DOCKER RUN ARGS...]. REDIS_URL in the environment, or with role_way=1
# the app role's way: its wrapper (roles/app/files/with-secrets) exports the secret file
# (0400, owned by uid 1000) as REDIS_URL, and its probe is the http healthcheck.
role_way=0
start() {
  local service=$1 version=$2 mounts=() cmd=()
  shift 2
  [[ $service == api || $service == worker ]] && mounts=(-v "$vol:/data/uploads")
  if [[ $service != web && $role_way == 1 ]]; then
    mounts+=(-v "$dir/secrets:/run/secrets:ro" -v "$SELFHOST_ROOT/roles/app/files:/selfhost:ro"
      -e SELFHOST_SECRET_ENV=REDIS_URL=redis_url --entrypoint /bin/sh)
    cmd=(/selfhost/with-secrets node "/app/$([[ $service == worker ]] && echo worker.js || echo server.js)")
  elif [[ $service != web ]]; then
    mounts+=("${app_env[@]}")
  fi
  if [[ $role_way == 1 ]]; then
    case $service in
      api) mounts+=(--health-cmd '/bin/sh /selfhost/probe http 3000 /api/health') ;;
      web) mounts+=(-v "$SELFHOST_ROOT/roles/app/files:/selfhost:ro" --health-cmd '/bin/sh /selfhost/probe http 8080 /healthz') ;;
    esac
  fi
  docker run -d --name "node-check-$service" --network "$net" "${hardened[@]}" "${mounts[@]}" "$@" \
    "selfhost/node-media-$service:$version" "${cmd[@]}" >/dev/null
}
start_edge() {
  docker run -d --name node-check-edge --network "$net" --read-only --cap-drop ALL \
    --cap-add CHOWN --cap-add SETUID --cap-add SETGID --cap-add NET_BIND_SERVICE --security-opt no-new-privileges \
    --tmpfs /var/cache/nginx --tmpfs /var/lib/nginx --tmpfs /var/log/nginx --tmpfs /run --tmpfs /tmp \
    -v "$dir/site.conf:/etc/nginx/conf.d/default.conf:ro" -v "$dir/proxy_headers.inc:/etc/nginx/conf.d/proxy_headers.inc:ro" \
    -p 127.0.0.1:18280:80 selfhost/nginx:1.26 >/dev/null
}
start_redis
check "redis healthy" wait_health node-check-redis healthy

# --- the images themselves -----------------------------------------------------------------
for version in v1 v2; do
  for service in api ws worker web; do
    image=selfhost/node-media-$service:$version
    check "$image: USER 1000:1000, no entrypoint" \
      bash -c "[[ \$(docker image inspect -f '{{.Config.User}} {{json .Config.Entrypoint}}' $image) == '1000:1000 null' ]]"
    check "$image: no curl, no wget, no npm" docker run --rm "$image" sh -c '! command -v curl && ! command -v wget && ! command -v npm'
  done
done
for service in api ws worker; do
  check "node-media-$service: no REDIS_URL, exit 2 naming it" bash -c \
    "out=\$(docker run --rm selfhost/node-media-$service:v1 2>&1); [[ \$? == 2 && \$out == *'REDIS_URL is not set'* ]]"
done

# --- v1 ---------------------------------------------------------------------------------------
start api v1 -p 127.0.0.1:18281:3000
start ws v1
start worker v1
start web v1
start_edge
for service in api ws worker web; do
  check "$service v1 healthy (the image's HEALTHCHECK)" wait_health "node-check-$service" healthy
  check "$service runs as uid 1000 (PID 1)" bash -c "[[ \$(pid1_uid node-check-$service) == 1000 ]]"
done
check "a new uploads volume belongs to uid 1000" bash -c "[[ \$(docker exec node-check-api stat -c %u /data/uploads) == 1000 ]]"
check "web: the page v1" body_has '<title>node-media v1</title>' "$edge/"
check "web: app.js" body_has 'new WebSocket' "$edge/app.js"
check "web: /healthz v1 (asked inside: the edge keeps /healthz for itself)" bash -c \
  "docker exec node-check-web node -e \"require('http').get('http://127.0.0.1:8080/healthz', (r) => r.on('data', (d) => process.stdout.write(d)))\" | grep -qx v1"
check "web: unknown page falls back to index.html" body_has '<title>node-media v1</title>' "$edge/some/page"
check "web: CSP header" bash -c "curl -fsSI $edge/ | grep -qi '^content-security-policy: default-src .self.'"
check "GET /api/health 200 v1" body_has '{"status":"ok","version":"v1","redis":"ok","storage":"ok"}' "$edge/api/health"
check "GET /ws/health 200 v1 (WebSocket service over HTTP)" body_has '"version":"v1"' "$edge/ws/health"
check "GET /api/uploads empty" body_has '{"uploads":[]}' "$edge/api/uploads"

# A WebSocket client through the edge: greeting, echo, then the worker's event for an upload.
"$here/ws-client.py" "ws://127.0.0.1:18280/ws/" --send 'echo-check 42' --expect 'echo-check 42' \
  --expect 'processed ' --timeout 30 >"$dir/ws.out" 2>&1 &
ws_client=$!
sleep 1
png_id=$(upload "$dir/pixel.png" -H 'Content-Type: image/png')
log "uploaded pixel.png as $png_id"
check "POST /api/uploads 201 with an id" bash -c "[[ '$png_id' =~ ^[0-9a-f]{32}$ ]]"
ws_done() { wait "$ws_client"; }
check "WebSocket: hello, echo and 'processed <id>' pushed" ws_done
check "WebSocket: the event names the upload" grep -qx "processed $png_id" "$dir/ws.out"
check "WebSocket: greeting names v1" grep -q '^hello v1 ' "$dir/ws.out"
check "worker: status done" wait_status "$png_id" "done"
meta=$(curl -fsS "$edge/api/uploads/$png_id/status")
log "status: $meta"
check "worker: sha256 of the file" bash -c "[[ \$(json 'd[\"result\"][\"sha256\"]' <<<'$meta') == $(sha256sum "$dir/pixel.png" | cut -c1-64) ]]"
check "worker: detected image/png, v1 gives no dimensions" bash -c \
  "[[ \$(json 'd[\"result\"][\"detected_type\"], \"dimensions\" in d[\"result\"]' <<<'$meta') == \"('image/png', False)\" ]]"
curl -fsS -D "$dir/get.headers" -o "$dir/get.png" "$edge/api/uploads/$png_id"
check "GET /api/uploads/<id>: the same bytes" cmp "$dir/pixel.png" "$dir/get.png"
check "GET /api/uploads/<id>: X-Upload-Status done, X-Upload-Sha256, image/png" bash -c \
  "tr -d '\r' <$dir/get.headers | grep -qix 'x-upload-status: done' && grep -qi '^x-upload-sha256: [0-9a-f]\{64\}' $dir/get.headers &&
   grep -qi '^content-type: image/png' $dir/get.headers"
check "GET /api/uploads lists it" body_has "\"id\":\"$png_id\"" "$edge/api/uploads"
check "Redis: jobs list empty, upload:<id> done" bash -c \
  "[[ \$(docker exec -e REDISCLI_AUTH=$redis_password node-check-redis redis-cli llen jobs) == 0 &&
     \$(docker exec -e REDISCLI_AUTH=$redis_password node-check-redis redis-cli hget upload:$png_id status) == done ]]"
check "volume: <id>.data, .json and .meta.json, owned by uid 1000" bash -c \
  "[[ \$(docker exec node-check-worker stat -c %u /data/uploads/$png_id.data /data/uploads/$png_id.json /data/uploads/$png_id.meta.json | sort -u) == 1000 ]]"
check "HTML is sent as a download" bash -c "id=\$(printf '<script>x</script>' | curl -fsS -X POST --data-binary @- \
  -H 'Content-Type: text/html' -H 'X-Filename: a.html' $edge/api/uploads | json 'd[\"id\"]');
  curl -fsSI $edge/api/uploads/\$id | tr -d '\r' | grep -qi '^content-disposition: attachment'"
check "POST multipart 415" http_is 415 -X POST -F "file=@$dir/notes.txt" "$edge/api/uploads"
check "POST empty 400" http_is 400 -X POST -H 'Content-Type: text/plain' --data-binary '' "$edge/api/uploads"
check "POST over MAX_UPLOAD_BYTES (10 MiB) 413" http_is 413 -X POST --data-binary "@$dir/big.bin" "$edge/api/uploads"
check "POST over the limit, streamed without Content-Length, 413" http_is 413 -X POST -H 'Transfer-Encoding: chunked' \
  --data-binary "@$dir/big.bin" "$direct/api/uploads"
check "no partial file left behind" bash -c "! docker exec node-check-api sh -c 'ls /data/uploads/*.part' 2>/dev/null"
check "GET unknown id 404" http_is 404 "$edge/api/uploads/0123456789abcdef0123456789abcdef"
check "GET malformed id 404 (API directly: the edge resolves ../ itself)" http_is 404 "$direct/api/uploads/..%2F..%2Fetc%2Fpasswd"
check "web: no way out of its files" bash -c "! curl -sS --path-as-is '$edge/../../etc/passwd' | grep -q root:"
check "WebSocket: upgrade from a foreign Origin refused" bash -c \
  "'$here/ws-client.py' ws://127.0.0.1:18280/ws/ --origin https://evil.example --expect x --timeout 5; [[ \$? == 2 ]]"
check "WebSocket: the page's own Origin accepted" "$here/ws-client.py" ws://127.0.0.1:18280/ws/ --origin "$edge" \
  --expect 'hello ' --timeout 5

# --- the worker finishes the job in hand on SIGTERM ------------------------------------------------
docker rm -f node-check-worker >/dev/null
start worker v1 -e WORKER_DELAY_MS=4000
check "slow worker healthy" wait_health node-check-worker healthy
txt_id=$(upload "$dir/notes.txt" -H 'Content-Type: text/plain')
check "slow worker: job processing" wait_status "$txt_id" processing
t0=$(date +%s%N)
docker stop -t 30 node-check-worker >/dev/null
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
log "worker stopped ${stop_ms} ms after SIGTERM"
check "SIGTERM mid-job: 'finishing job <id> first' logged" bash -c "docker logs node-check-worker 2>&1 | grep -q 'finishing job $txt_id first'"
check "SIGTERM mid-job: exit 0" bash -c "[[ \$(docker inspect -f '{{.State.ExitCode}}' node-check-worker) == 0 ]]"
check "SIGTERM mid-job: the job is done" bash -c "[[ \$(status_of $txt_id) == done ]]"
docker rm -f node-check-worker >/dev/null
start worker v1
check "worker healthy again" wait_health node-check-worker healthy
t0=$(date +%s%N)
docker stop -t 30 node-check-worker >/dev/null
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "SIGTERM when idle: exit 0 within 3 s (${stop_ms} ms)" bash -c \
  "[[ \$(docker inspect -f '{{.State.ExitCode}}' node-check-worker) == 0 && $stop_ms -lt 3000 ]]"
docker start node-check-worker >/dev/null

# --- Redis away and back (a new, empty Redis: nothing persisted in this test) ----------------
docker rm -f -v node-check-redis >/dev/null
check "redis down: /api/health 503 naming redis" bash -c "curl -sS $edge/api/health | grep -q '\"redis\":\"error'"
check "redis down: /ws/health 503" http_is 503 "$edge/ws/health"
check "redis down: an upload is kept but answered 503 (not queued)" http_is 503 -X POST --data-binary "@$dir/notes.txt" "$edge/api/uploads"
check "redis down: the worker turns unhealthy" wait_health node-check-worker unhealthy 40
start_redis
check "redis back: api healthy" bash -c "for i in \$(seq 20); do curl -fsS $edge/api/health >/dev/null && exit 0; sleep 1; done; exit 1"
check "redis back: ws subscribed again" bash -c "for i in \$(seq 20); do curl -fsS $edge/ws/health >/dev/null && exit 0; sleep 1; done; exit 1"
check "redis back: worker healthy" wait_health node-check-worker healthy
check "an old upload's status comes from the volume when Redis forgot it" bash -c "[[ \$(status_of $png_id) == done ]]"
"$here/ws-client.py" "ws://127.0.0.1:18280/ws/" --expect 'processed ' --timeout 20 >"$dir/ws2.out" 2>&1 &
ws_client=$!
sleep 1
again_id=$(upload "$dir/notes.txt")
check "after the Redis restart, events still reach WebSocket clients" ws_done
check "... for that upload" grep -qx "processed $again_id" "$dir/ws2.out"

# --- v2 replaces every container, started the role's way; the uploads stay on the volume ---------
docker rm -f node-check-api node-check-ws node-check-worker node-check-web >/dev/null
mkdir -p "$dir/secrets"
printf '%s\n' "redis://:$redis_password@node-check-redis:6379/0" >"$dir/secrets/redis_url"
chown 1000:1000 "$dir/secrets/redis_url"
chmod 0400 "$dir/secrets/redis_url"
role_way=1
start api v2 -p 127.0.0.1:18281:3000
start ws v2
start worker v2
start web v2
for service in api ws worker web; do
  check "$service v2 healthy" wait_health "node-check-$service" healthy
done
check "GET /api/health v2" body_has '"version":"v2"' "$edge/api/health"
check "role's way: REDIS_URL is not in the containers' config" bash -c \
  "! docker inspect node-check-api node-check-ws node-check-worker | grep -qF '$redis_password'"
check "GET /ws/health v2" body_has '"version":"v2"' "$edge/ws/health"
check "web: the page v2" body_has '<title>node-media v2</title>' "$edge/"
curl -fsS -o "$dir/get2.png" "$edge/api/uploads/$png_id"
check "the v1 upload survived the replacement (same bytes)" cmp "$dir/pixel.png" "$dir/get2.png"
check "... and is still done" bash -c "[[ \$(status_of $png_id) == done ]]"
png2_id=$(upload "$dir/pixel.png" -H 'Content-Type: image/png')
txt2_id=$(upload "$dir/notes.txt" -H 'Content-Type: text/plain')
check "v2 worker: done" wait_status "$txt2_id" "done"
check "v2 worker: PNG dimensions 3x2" bash -c \
  "[[ \$(curl -fsS $edge/api/uploads/$png2_id/status | json 'd[\"result\"][\"dimensions\"]') == \"{'width': 3, 'height': 2}\" ]]"
check "v2 worker: text preview and 3 lines" bash -c \
  "[[ \$(curl -fsS $edge/api/uploads/$txt2_id/status | json 'd[\"result\"][\"lines\"], d[\"result\"][\"preview\"][:10]') == \"(3, 'first line')\" ]]"

if ((fails)); then
  for service in api ws worker; do docker logs "node-check-$service" >"/tmp/node-check-$service.log" 2>&1 || true; done
  die "$fails of $checks checks failed (logs: /tmp/node-check-{api,ws,worker}.log)"
fi
log "node-media: $checks checks passed"
echo "$checks passed, 0 failed"
