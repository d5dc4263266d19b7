#!/usr/bin/env bash
# Builds the application stack's images (postgres, redis, nginx from Debian's packages; the demo
# app's backend and frontend in every version) FROM the base image and pushes them to the local
# registry, plus minimal variants of the stack images (stack-images/minimal: no curl, wget,
# setpriv, procps) and postgres in the official 18 layout; see stack-images/README.md.
# Usage: stack-images.sh BASE_IMAGE [REGISTRY_PUSH (default 127.0.0.1:5000)]
# Each build is cached under a local tag carrying a hash of its context, the base image and its
# build args; a push is skipped when the registry already serves that image's digest. So an
# unchanged second run builds and pushes nothing. Prints one reference per line on stdout.
source "$(dirname "$0")/../../scripts/lib.sh"

base=${1:?usage: stack-images.sh BASE_IMAGE [REGISTRY_PUSH]}
push=${2:-127.0.0.1:$SELFHOST_REGISTRY_PORT}
stack=$SELFHOST_ROOT/tests/harness/stack-images
demo=$SELFHOST_ROOT/examples/demo-app
# The majors Debian 13 ships; each Dockerfile fails its build if the archive disagrees.
PG_MAJOR=17 REDIS_MAJOR=8 NGINX_VERSION=1.26
# The official postgres image's data layout from 18 on, served with Debian's PG_MAJOR binaries.
PG_LAYOUT=18

image_exists "$base" || die "base image $base not found (run tests/harness/base-image.sh first)"
curl -fsS "http://$push/v2/" >/dev/null || die "no registry answers at $push (run tests/harness/registry.sh)"

# Two runs at once (several engineers, one engine) would race on the same tags.
exec 9>"${TMPDIR:-/tmp}/selfhost-stack-images.lock"
flock 9

# True when the registry serves exactly the digest Docker recorded when it pushed $1 as $2.
in_registry() {
  local image=$1 repo=${2%:*} tag=${2##*:} digest
  digest=$(curl -fsS -o /dev/null -D - -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$push/v2/$repo/manifests/$tag" 2>/dev/null |
    tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }') || return 1
  [[ -n $digest ]] && docker image inspect -f '{{join .RepoDigests "\n"}}' "$image" | grep -qxF "$push/$repo@$digest"
}

# build NAME:TAG CONTEXT [BUILD_ARG=VALUE ...]: builds the image unless its cache tag exists, and
# sets $built to that tag (NAME:TAG-HASH), which a later build can start FROM. Neither tags
# NAME:TAG nor pushes nor prunes.
build() {
  local ref=$1 ctx=$2 args=() arg
  shift 2
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  built="$ref-$(inputs_hash "$ctx" "$base" "$@")"
  if image_exists "$built"; then
    log "$ref: cached ($built)"
  else
    log "$ref: building from $ctx"
    # The legacy builder (no buildx here); its deprecation notice is shown only on failure.
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" "${args[@]}" -t "$built" "$ctx" \
      >/dev/null 2>"$errlog" || { cat "$errlog" >&2; die "building $ref failed"; }
  fi
}

# build_push NAME:TAG CONTEXT [BUILD_ARG=VALUE ...]: build, tag NAME:TAG and push it.
build_push() {
  local ref=$1
  build "$@"
  docker tag "$built" "$ref"
  if in_registry "$built" "$ref"; then
    log "$ref: already in $push"
  else
    log "$ref: pushing to $push"
    docker tag "$built" "$push/$ref"
    docker push -q "$push/$ref" >/dev/null || die "pushing $push/$ref failed"
  fi
  prune_stale "$ref" "$built"
  refs+=("$ref")
}

# Removes the images of earlier inputs for REF (their cache tags, then the untagged images). Only
# REF-<hash> tags count: redis:8's are not redis:8-minimal's.
prune_stale() {
  local ref=$1 cached=$2 stale ids
  stale=$(docker images --format '{{.Repository}}:{{.Tag}}' "${ref%:*}" |
    grep -xE "${ref//./\\.}-[0-9a-f]{12}" | grep -vxF "$cached") || return 0
  ids=$(xargs docker image inspect -f '{{.Id}}' <<<"$stale")
  xargs docker rmi <<<"$stale" >/dev/null 2>&1 || true
  xargs docker rmi <<<"$ids" >/dev/null 2>&1 || true  # fails harmlessly for an image still in use
}

refs=()
errlog=$(mktemp)
trap 'rm -f "$errlog"' EXIT
build_push "selfhost/postgres:$PG_MAJOR" "$stack/postgres" "PG_MAJOR=$PG_MAJOR"
# postgres:18 is built minimal only (the official image has no curl, wget or procps either); its
# unstripped stage stays a local cache tag.
build "selfhost/postgres:$PG_LAYOUT-full" "$stack/postgres" "PG_MAJOR=$PG_MAJOR" "PG_LAYOUT=$PG_LAYOUT" \
  "PGDATA=/var/lib/postgresql/$PG_LAYOUT/docker" PG_VOLUME=/var/lib/postgresql
prune_stale "selfhost/postgres:$PG_LAYOUT-full" "$built"
build_push "selfhost/postgres:$PG_LAYOUT" "$stack/minimal" "FROM_IMAGE=$built" WITH_GOSU=true
build_push "selfhost/redis:$REDIS_MAJOR" "$stack/redis" "REDIS_MAJOR=$REDIS_MAJOR"
build_push "selfhost/redis:$REDIS_MAJOR-minimal" "$stack/minimal" "FROM_IMAGE=$built" WITH_GOSU=true
build_push "selfhost/nginx:$NGINX_VERSION" "$stack/nginx" "NGINX_VERSION=$NGINX_VERSION"
build_push "selfhost/nginx:$NGINX_VERSION-slim" "$stack/minimal" "FROM_IMAGE=$built"
for version in v1 v2 broken; do
  build_push "selfhost/demo-backend:$version" "$demo/backend" "APP_VERSION=$version"
  build_push "selfhost/demo-frontend:$version" "$demo/frontend" "APP_VERSION=$version"
done
printf '%s\n' "${refs[@]}"
