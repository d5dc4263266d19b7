# shellcheck shell=bash
# Building and pushing the harness's images, shared by the scripts that build them
# (stack-images.sh, example-images.sh). Source it after
# scripts/lib.sh. The caller sets:
#   base    the base image every build gets as BASE_IMAGE
#   push    the registry to push to (host:port, e.g. 127.0.0.1:5000)
#   errlog  a scratch file for a failed build's output
#   refs    an array; build_push appends each reference it handled
# Each build is cached under a local tag NAME:TAG-<hash of the context, the base image and the
# build args>; a push is skipped when the registry already serves that image's digest.
# shellcheck disable=SC2154  # base, push and errlog come from the caller (above)

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
