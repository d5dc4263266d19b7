#!/usr/bin/env bash
# Prepares this machine to run the demo and the tests; safe to run again (cached steps are skipped):
# Debian packages, the pinned Python venv, the collection link, a Docker engine, and the
# offline images (test host, registry, application stack). Writes .harness.env for the others.
source "$(dirname "$0")/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root: it installs Debian packages and starts a Docker engine"
command -v apt-get >/dev/null || die "this harness needs a Debian or Ubuntu machine (apt-get)"

apt_install_missing docker.io debootstrap ca-certificates curl git rsync openssl
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install_missing python3-venv python3-pip
# The tls scenario's TLS scan runs on this machine (molecule/tls: testssl against the test host).
apt_install_missing testssl.sh
# The unit tests check the rendered load balancer configuration with `haproxy -c`.
apt_install_missing haproxy

# The pinned toolchain; reinstalled only when requirements.txt changes.
req_hash=$(inputs_hash "$SELFHOST_ROOT/requirements.txt")
if [[ ! -x $SELFHOST_VENV/bin/python || $(cat "$SELFHOST_VENV/.requirements-hash" 2>/dev/null) != "$req_hash" ]]; then
  log "creating the Python venv in $SELFHOST_VENV"
  python3 -m venv "$SELFHOST_VENV"
  "$SELFHOST_VENV/bin/pip" install -q --upgrade 'pip>=24'
  "$SELFHOST_VENV/bin/pip" install -q -r "$SELFHOST_ROOT/requirements.txt" 2> >(grep -v "WARNING: Location" >&2)
  echo "$req_hash" >"$SELFHOST_VENV/.requirements-hash"
fi

# Playbooks in this checkout find the collection as selfhost.stack through ansible.cfg.
mkdir -p "$SELFHOST_ROOT/.collections/ansible_collections/selfhost"
ln -sfn ../../.. "$SELFHOST_ROOT/.collections/ansible_collections/selfhost/stack"

ensure_docker_engine

base_image=$("$SELFHOST_ROOT/tests/harness/base-image.sh" trixie)
"$SELFHOST_ROOT/tests/harness/registry.sh" "$base_image"
"$SELFHOST_ROOT/tests/harness/pebble.sh" "$base_image"
"$SELFHOST_ROOT/tests/harness/stack-images.sh" "$base_image" >/dev/null
"$SELFHOST_ROOT/tests/harness/example-images.sh" "$base_image" >/dev/null
docker_host_image=$("$SELFHOST_ROOT/tests/harness/docker-host-image.sh" "$base_image")

cat >"$SELFHOST_ROOT/.harness.env" <<ENV
export SELFHOST_BASE_IMAGE=$base_image
export SELFHOST_REGISTRY_PUSH=127.0.0.1:$SELFHOST_REGISTRY_PORT
export SELFHOST_REGISTRY=$SELFHOST_REGISTRY_NAME:$SELFHOST_REGISTRY_PORT
export SELFHOST_NETWORK=$SELFHOST_NETWORK
export SELFHOST_DOCKER_HOST_IMAGE=$docker_host_image
ENV
log "setup done: images and registry ready (.harness.env)"
