#!/usr/bin/env bash
# Starts the local image registry as a container on the test network (Debian's docker-registry,
# built FROM the base image). The machine pushes to 127.0.0.1:PORT; test hosts pull from
# selfhost-registry:PORT, which their own engines trust as an insecure registry.
source "$(dirname "$0")/../../scripts/lib.sh"

base=${1:?usage: registry.sh BASE_IMAGE}
ctx=$SELFHOST_ROOT/tests/harness/registry
ref="selfhost/registry:$(inputs_hash "$ctx" "$base")"

if ! image_exists "$ref"; then
  log "building $ref"
  docker build -q --build-arg "BASE_IMAGE=$base" -t "$ref" "$ctx" >/dev/null
fi

docker network inspect "$SELFHOST_NETWORK" >/dev/null 2>&1 \
  || docker network create --label selfhost.test=1 "$SELFHOST_NETWORK" >/dev/null

running=$(docker inspect -f '{{.Config.Image}} {{.State.Running}}' "$SELFHOST_REGISTRY_NAME" 2>/dev/null || true)
if [[ $running != "$ref true" ]]; then
  docker rm -f "$SELFHOST_REGISTRY_NAME" >/dev/null 2>&1 || true
  log "starting the local registry on 127.0.0.1:$SELFHOST_REGISTRY_PORT"
  # Images persist in a named volume so a second run pushes nothing new.
  docker run -d --name "$SELFHOST_REGISTRY_NAME" --network "$SELFHOST_NETWORK" \
    --restart unless-stopped -p "127.0.0.1:$SELFHOST_REGISTRY_PORT:5000" \
    -v selfhost-registry-data:/var/lib/docker-registry "$ref" >/dev/null
fi
for _ in $(seq 30); do
  curl -fsS "http://127.0.0.1:$SELFHOST_REGISTRY_PORT/v2/" >/dev/null 2>&1 && exit 0
  sleep 1
done
docker logs --tail 20 "$SELFHOST_REGISTRY_NAME" >&2
die "the local registry did not answer on 127.0.0.1:$SELFHOST_REGISTRY_PORT"
