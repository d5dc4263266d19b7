# shellcheck shell=bash
# Shared helpers for the project's scripts: paths, logging, the Docker engine and the venv.
set -euo pipefail

SELFHOST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELFHOST_VENV=${SELFHOST_VENV:-$SELFHOST_ROOT/.venv}
SELFHOST_STATE=${SELFHOST_STATE:-/var/lib/selfhost-harness}
SELFHOST_NETWORK=${SELFHOST_NETWORK:-selfhost-test}
# shellcheck disable=SC2034 # read by the scripts that source this file
SELFHOST_REGISTRY_NAME=selfhost-registry
SELFHOST_REGISTRY_PORT=${SELFHOST_REGISTRY_PORT:-5000}
export SELFHOST_ROOT SELFHOST_VENV SELFHOST_STATE SELFHOST_NETWORK

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mERROR:\033[0m %s\n' "$*" >&2; exit 1; }

# Short content hash of files and extra strings, used as cache key for images.
inputs_hash() {
  local f
  {
    for f in "$@"; do
      if [[ -d $f ]]; then
        (cd "$f" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
      elif [[ -f $f ]]; then
        sha256sum <"$f"
      else
        printf '%s\n' "$f"
      fi
    done
  } | sha256sum | cut -c1-12
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

apt_install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Leaves an engine that already answers alone; otherwise starts dockerd in the background.
ensure_docker_engine() {
  if docker info >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null || apt_install_missing docker.io
  log "starting the Docker engine (no systemd here: dockerd in the background)"
  mkdir -p /var/log
  # Descriptors 3-9 closed: a lock the caller holds (flock) must not live on in the daemon.
  setsid nohup dockerd >/var/log/selfhost-dockerd.log 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  tail -20 /var/log/selfhost-dockerd.log >&2
  die "the Docker engine did not answer within 60 s (log: /var/log/selfhost-dockerd.log)"
}

activate_venv() {
  # shellcheck disable=SC1091
  source "$SELFHOST_VENV/bin/activate"
}
