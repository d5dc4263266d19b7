#!/bin/sh
# pebble-challtestsrv answers DNS on :8053 for the names the tests register through its
# management API on :8055 (POST /add-a {"host": ..., "addresses": [...]}); other names get no
# address. Its own challenge responders are off: validation reaches the real test hosts.
# Pebble resolves every identifier through it (-dnsserver). Either process exiting stops the
# container.
set -eu
pebble-challtestsrv -defaultIPv4 "" -defaultIPv6 "" -dns01 :8053 -management :8055 \
  -http01 "" -https01 "" -tlsalpn01 "" -doh "" &
challtestsrv=$!
pebble -config /etc/pebble/pebble-config.json -dnsserver 127.0.0.1:8053 &
pebble=$!
trap 'kill "$challtestsrv" "$pebble" 2>/dev/null' TERM INT
# POSIX sh has no `wait -n`: poll until one of them is gone, then stop the other.
while kill -0 "$challtestsrv" 2>/dev/null && kill -0 "$pebble" 2>/dev/null; do sleep 1; done
kill "$challtestsrv" "$pebble" 2>/dev/null || true
echo "pebble-entrypoint: pebble or pebble-challtestsrv exited" >&2
exit 1
