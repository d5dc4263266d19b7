#!/usr/bin/env bash
# Builds the example applications' images in every version FROM the base image and pushes them
# to the local registry, like stack-images.sh (run that first: the shop's edge image starts FROM
# its selfhost/nginx:1.26):
#   examples/fastapi-shop: selfhost/fastapi-shop-api and selfhost/fastapi-shop-edge, v1 v2 broken
#   examples/node-media:   selfhost/node-media-{api,web,ws,worker}, v1 v2
# and the stand-ins for the images of the collection README's example model (its
# registry.example.com/shop/{api,web}), which the examples scenario deploys:
#   tests/harness/readme-shop: selfhost/readme-shop-{api,web}, 1.4.2 (the README's app_version) 1.4.3
# Usage: example-images.sh BASE_IMAGE [REGISTRY_PUSH (default 127.0.0.1:5000)]
# Cached by a hash of each build's inputs (an unchanged second run builds and pushes nothing);
# prints one reference per line on stdout.
# npm behind a TLS-inspecting proxy: the node images' npm stage trusts the PEM certificates in
# $SELFHOST_EXTRA_CA_CERTS (a file), by default this machine's own additions to its trust store
# (/usr/local/share/ca-certificates/*.crt); they never reach the final images.
source "$(dirname "$0")/../../scripts/lib.sh"
# shellcheck source=tests/harness/images-lib.sh
source "$SELFHOST_ROOT/tests/harness/images-lib.sh"

base=${1:?usage: example-images.sh BASE_IMAGE [REGISTRY_PUSH]}
push=${2:-127.0.0.1:$SELFHOST_REGISTRY_PORT}
examples=$SELFHOST_ROOT/examples
nginx=selfhost/nginx:1.26

image_exists "$base" || die "base image $base not found (run tests/harness/base-image.sh first)"
image_exists "$nginx" || die "$nginx not found (run tests/harness/stack-images.sh first)"
curl -fsS "http://$push/v2/" >/dev/null || die "no registry answers at $push (run tests/harness/registry.sh)"

# Two runs at once (several engineers, one engine) would race on the same tags.
exec 9>"${TMPDIR:-/tmp}/selfhost-example-images.lock"
flock 9

npm_args=()
if [[ -n ${SELFHOST_EXTRA_CA_CERTS:-} ]]; then
  npm_args=("EXTRA_CA_CERTS=$(cat "$SELFHOST_EXTRA_CA_CERTS")")
elif compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  npm_args=("EXTRA_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt)")
fi
# The edge image's cache key follows the nginx image it starts FROM.
nginx_id=$(docker image inspect -f '{{.Id}}' "$nginx")

refs=()
errlog=$(mktemp)
trap 'rm -f "$errlog"' EXIT
for version in v1 v2 broken; do
  build_push "selfhost/fastapi-shop-api:$version" "$examples/fastapi-shop/api" "APP_VERSION=$version"
  build_push "selfhost/fastapi-shop-edge:$version" "$examples/fastapi-shop/frontend" "APP_VERSION=$version" \
    "NGINX_IMAGE=$nginx" "NGINX_IMAGE_ID=$nginx_id"
done
for version in v1 v2; do
  for service in api ws worker; do
    build_push "selfhost/node-media-$service:$version" "$examples/node-media/$service" "APP_VERSION=$version" \
      "${npm_args[@]}"
  done
  build_push "selfhost/node-media-web:$version" "$examples/node-media/web" "APP_VERSION=$version"
done
readme_shop=$SELFHOST_ROOT/tests/harness/readme-shop
for version in 1.4.2 1.4.3; do
  build_push "selfhost/readme-shop-api:$version" "$readme_shop/api" "APP_VERSION=$version" "${npm_args[@]}"
  build_push "selfhost/readme-shop-web:$version" "$readme_shop/web" "APP_VERSION=$version"
done
printf '%s\n' "${refs[@]}"
