#!/usr/bin/env bash
# Builds the test-host image with Docker already installed by roles/docker (distro source, the local
# registry trusted as insecure), so scenarios that need an engine skip the install. The tag carries
# a hash of the role, the playbook, this script and the base image: an unchanged second run builds
# nothing. The inner image store (/var/lib/docker, an anonymous volume) starts empty.
# Prints the image reference on stdout.
source "$(dirname "$0")/../../scripts/lib.sh"

base=${1:?usage: docker-host-image.sh BASE_IMAGE}
playbook=$SELFHOST_ROOT/tests/harness/docker-host.yml
ref="selfhost/testhost-docker:$(inputs_hash "$SELFHOST_ROOT/roles/docker" "$playbook" "$0" "$base")"

if image_exists "$ref"; then
  log "Docker test-host image $ref is cached"
  echo "$ref"
  exit 0
fi

name=selfhost-docker-host-build-$$
probe=$name-probe
log_file=$(mktemp /var/tmp/selfhost-docker-host.XXXXXX.log)
# Not labelled selfhost.test: scripts/test.sh removes those containers when any test run ends.
trap 'docker rm -fv "$name" "$probe" >/dev/null 2>&1 || true' EXIT

# The same options as molecule/shared/create.yml: systemd plus an engine of its own, without --privileged.
start_host() {
  docker run --detach --name "$1" --network "$SELFHOST_NETWORK" --label selfhost.build=1 \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
    --cgroupns host --volume /sys/fs/cgroup:/sys/fs/cgroup:rw --volume /var/lib/docker \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp:exec --stop-signal SIGRTMIN+3 "$2" >/dev/null
  # Right after the start, systemctl fails until systemd's bus is up: retry, bounded.
  local state
  for _ in $(seq 60); do
    state=$(docker exec "$1" timeout 120 systemctl is-system-running --wait 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && return 0
    sleep 2
  done
  die "$1 did not finish booting (state: ${state:-none})"
}

docker network inspect "$SELFHOST_NETWORK" >/dev/null 2>&1 \
  || docker network create --label selfhost.test=1 "$SELFHOST_NETWORK" >/dev/null

log "building $ref: Docker installed by roles/docker (1 to 2 minutes)"
start_host "$name" "$base"
(cd "$SELFHOST_ROOT" && "$SELFHOST_VENV/bin/ansible-playbook" -i "$name," -c community.docker.docker "$playbook") \
  >"$log_file" 2>&1 || { tail -40 "$log_file" >&2; die "the playbook failed (log: $log_file)"; }
rm -f "$log_file"

# A clean image: engine stopped, no package cache, a fresh machine-id on every boot.
docker exec "$name" sh -c 'systemctl stop docker.socket docker.service containerd.service &&
  apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/journal/* && : >/etc/machine-id'
docker commit --change 'CMD ["/sbin/init","SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1"]' "$name" "$ref" >/dev/null
docker rm -fv "$name" >/dev/null

# Smoke test before anyone uses the tag: the inner engine starts at boot and runs a container
# (an image imported from the host's own /usr/bin/true, since the inner store starts empty).
start_host "$probe" "$ref"
if ! docker exec "$probe" sh -ec '
    for _ in $(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
    tar -ch $(ldd /usr/bin/true | grep -o "/[^ ]*") /usr/bin/true 2>/dev/null | docker import - selfhost/true >/dev/null
    docker run --rm -m 64m selfhost/true /usr/bin/true
    docker info --format "{{.RegistryConfig.IndexConfigs}}" | grep -q "selfhost-registry:5000"'; then
  docker rmi "$ref" >/dev/null 2>&1 || true
  die "a container from $ref has no working Docker engine"
fi
log "built $ref"
echo "$ref"
