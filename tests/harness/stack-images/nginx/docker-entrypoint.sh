#!/bin/sh
# Same behaviour as the official nginx image's entrypoint: run /docker-entrypoint.d/*.sh
# (and source *.envsh) before starting nginx.
set -e

if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
  for f in /docker-entrypoint.d/*; do
    case "$f" in
      *.envsh)
        # shellcheck disable=SC1090
        if [ -x "$f" ]; then . "$f"; fi ;;
      *.sh) if [ -x "$f" ]; then "$f"; else echo "$0: ignoring $f, not executable"; fi ;;
    esac
  done
fi

exec "$@"
