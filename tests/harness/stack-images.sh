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

# in_registry, build, build_push, prune_stale: shared with example-images.sh.
# shellcheck source=tests/harness/images-lib.sh
source "$(dirname "$0")/images-lib.sh"

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
