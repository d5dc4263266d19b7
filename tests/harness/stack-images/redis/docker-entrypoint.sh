#!/bin/sh
# Same behaviour as the official redis image's entrypoint.
set -e

# First argument `-` (config on stdin), `--some-option` or `something.conf`: run redis-server.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi

if [ "$1" = redis-server ]; then
  # The official image compiles protected mode off; Debian's binary has it on. Emulate that
  # only without a config file or stdin config (`-`), whose settings must keep the last word.
  case "${2:-}" in
    '' | --*)
      case " $* " in
        *" --protected-mode "*) ;;
        *) set -- "$@" --protected-mode no ;;
      esac ;;
  esac
  if [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    # The minimal variant has no setpriv on PATH but gosu, the official image's tool up to 8.0.
    if command -v gosu >/dev/null; then exec gosu redis "$0" "$@"; fi
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
  fi
  um=$(umask)
  [ "$um" != 0022 ] || umask 0077
fi

exec "$@"
