#!/bin/sh
# Compose mounts secrets with the host file's owner and mode (root, 0400), so only root can
# read them. Started as root, hand private copies to the app user on the /tmp tmpfs, point
# the *_FILE variables at them, and drop privileges before the application starts.
set -eu
if [ "$(id -u)" = 0 ]; then
  dir=/tmp/secrets
  mkdir -p -m 0700 "$dir"
  for var in DATABASE_PASSWORD_FILE REDIS_PASSWORD_FILE; do
    eval "src=\${$var:-}"
    [ -n "$src" ] || continue
    dst="$dir/$(basename "$src")"
    cp "$src" "$dst"
    chmod 0400 "$dst"
    export "$var=$dst"
  done
  chown -R app:app "$dir"
  exec setpriv --reuid=app --regid=app --init-groups "$@"
fi
exec "$@"
