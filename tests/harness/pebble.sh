#!/usr/bin/env bash
# Starts Pebble (ACME test server) with pebble-challtestsrv (its mock DNS) as the container
# selfhost-pebble on the test network, built FROM the base image and cached by a hash of its
# inputs. Test hosts use https://selfhost-pebble:14000/dir, trusting the listener CA printed by
#   docker exec selfhost-pebble cat /etc/pebble/tls/ca.pem
# A scenario points the names it validates at its test host through challtestsrv's API:
#   docker exec selfhost-pebble curl -fsS -d '{"host":"app.selfhost.test","addresses":["IP"]}' http://127.0.0.1:8055/add-a
# Usage: pebble.sh BASE_IMAGE
source "$(dirname "$0")/../../scripts/lib.sh"

base=${1:?usage: pebble.sh BASE_IMAGE}
ctx=$SELFHOST_ROOT/tests/harness/pebble
name=selfhost-pebble
ref="selfhost/pebble:$(inputs_hash "$ctx" "$base")"

if ! image_exists "$ref"; then
  log "building $ref"
  errlog=$(mktemp)
  # The legacy builder (no buildx here); its deprecation notice is shown only on failure.
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" -t "$ref" "$ctx" >/dev/null 2>"$errlog" \
    || { cat "$errlog" >&2; rm -f "$errlog"; die "building $ref failed"; }
  rm -f "$errlog"
fi

docker network inspect "$SELFHOST_NETWORK" >/dev/null 2>&1 \
  || docker network create --label selfhost.test=1 "$SELFHOST_NETWORK" >/dev/null

running=$(docker inspect -f '{{.Config.Image}} {{.State.Running}}' "$name" 2>/dev/null || true)
if [[ $running != "$ref true" ]]; then
  docker rm -f "$name" >/dev/null 2>&1 || true
  log "starting Pebble as $name on network $SELFHOST_NETWORK"
  # No published port: only containers on the test network (and this machine, through
  # docker exec) talk to it.
  docker run -d --name "$name" --network "$SELFHOST_NETWORK" --restart unless-stopped "$ref" >/dev/null
  # Images of earlier inputs are unused now.
  docker images --format '{{.Repository}}:{{.Tag}}' selfhost/pebble | grep -vxF "$ref" | xargs -r docker rmi >/dev/null 2>&1 || true
fi
# The image's own healthcheck, run now rather than at its first interval.
probe=$(docker inspect -f '{{join .Config.Healthcheck.Test " "}}' "$ref")
for _ in $(seq 30); do
  docker exec "$name" sh -c "${probe#CMD-SHELL }" >/dev/null 2>&1 && exit 0
  sleep 1
done
docker logs --tail 20 "$name" >&2
die "Pebble did not become healthy (docker logs $name)"
