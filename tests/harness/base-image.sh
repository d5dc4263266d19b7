#!/usr/bin/env bash
# Builds the test-host base image (Debian, systemd, python3) with debootstrap and imports it.
# The tag carries a hash of this file and the suite, so an unchanged second run builds nothing.
# Prints the image reference on stdout.
source "$(dirname "$0")/../../scripts/lib.sh"

suite=${1:-trixie}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,ca-certificates,curl,gnupg,procps,iputils-ping,openssh-client
ref="selfhost/base:${suite}-$(inputs_hash "$0" "$suite" "$include" "$mirror")"

if image_exists "$ref"; then
  log "base image $ref is cached"
  echo "$ref"
  exit 0
fi

apt_install_missing debootstrap
root=$(mktemp -d /var/tmp/selfhost-rootfs.XXXXXX)
# debootstrap leaves /proc and /sys mounted only when it fails; under `set -e` a failing umount in
# the trap would become the script's exit status, so it must not fail.
remove_rootfs() {
  umount -R "$root/proc" "$root/sys" 2>/dev/null || true
  rm -rf "$root"
}
trap remove_rootfs EXIT
log "debootstrap $suite into $root (1 to 2 minutes)"
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -30 "$root.log" >&2; die "debootstrap $suite failed (log: $root.log)"; }
rm -f "$root.log"

# Container hygiene: no console gettys, no units that cannot work without real hardware.
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-firstboot.service systemd-modules-load.service sys-kernel-config.mount; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
: >"$root/etc/machine-id"
printf 'deb %s %s main\n' "$mirror" "$suite" >"$root/etc/apt/sources.list"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb

tar -C "$root" -c . | docker import \
  -c 'CMD ["/sbin/init", "SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1"]' \
  -c 'ENV container=docker' - "$ref" >/dev/null
log "built $ref"
echo "$ref"
