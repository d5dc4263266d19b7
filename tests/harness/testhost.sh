#!/usr/bin/env bash
# Starts a systemd Debian test host container that can run its own Docker engine, and waits
# until systemd has booted. Usage: testhost.sh NAME IMAGE [extra docker run args...]
# Without --privileged (refused on these machines) this is the set of options that works:
# all capabilities but SYS_RESOURCE, unconfined seccomp/apparmor, and a writable /proc/sys
# (systempaths=unconfined) for the inner engine's network setup.
source "$(dirname "$0")/../../scripts/lib.sh"

name=${1:?usage: testhost.sh NAME IMAGE [docker run args...]}
image=${2:?usage: testhost.sh NAME IMAGE [docker run args...]}
shift 2

docker network inspect "$SELFHOST_NETWORK" >/dev/null 2>&1 \
  || docker network create --label selfhost.test=1 "$SELFHOST_NETWORK" >/dev/null

# scripts/test.sh removes the hosts of its own run (and only those) when it ends.
docker run --detach --name "$name" --hostname "$name" --network "$SELFHOST_NETWORK" \
  --label "selfhost.run=${SELFHOST_RUN_ID:-none}" \
  --cap-add ALL --cap-drop SYS_RESOURCE \
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
  --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
  --cgroupns host --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
  --volume /var/lib/docker \
  --tmpfs /run --tmpfs /run/lock --tmpfs /tmp:exec \
  --stop-signal SIGRTMIN+3 "$@" "$image" >/dev/null

# systemctl cannot answer until systemd has set up its bus: ask again until it can.
state=
for _ in $(seq 120); do
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 1
done
case $state in
  running | degraded) log "test host $name booted ($state)" ;;
  *) docker logs --tail 30 "$name" >&2; die "test host $name did not boot: '$state'" ;;
esac
