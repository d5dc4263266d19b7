#!/usr/bin/env bash
# Sets this machine up, starts a local test host (a systemd Debian 13 container) and deploys
# the demo stack onto it with playbooks/deploy.yml. Safe to run again: it converges.
# DEMO_PORT (default 8080) is where the demo is published on 127.0.0.1.
source "$(dirname "$0")/lib.sh"

demo_host=selfhost-demo
demo_port=${DEMO_PORT:-8080}
vault_file=$SELFHOST_ROOT/inventories/local/group_vars/all/vault.yml
vault_pass=$SELFHOST_ROOT/.cache/demo-vault-pass

"$SELFHOST_ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$SELFHOST_ROOT/.harness.env"
activate_venv
cd "$SELFHOST_ROOT" || exit 1

# Demo secrets: random, kept in a Vault-encrypted file like a real inventory's.
if [[ ! -f $vault_file ]]; then
  log "generating the demo's secrets in $vault_file (Vault-encrypted, password in $vault_pass)"
  mkdir -p "$(dirname "$vault_pass")"
  (umask 077 && openssl rand -hex 32 >"$vault_pass")
  (umask 077 && printf -- '---\nvault_app_db_password: %s\nvault_app_redis_password: %s\n' \
    "$(openssl rand -hex 24)" "$(openssl rand -hex 24)" >"$vault_file")
  ansible-vault encrypt --vault-password-file "$vault_pass" "$vault_file" >/dev/null
fi

if [[ $(docker inspect -f '{{.State.Running}}' "$demo_host" 2>/dev/null) != true ]]; then
  docker rm -fv "$demo_host" >/dev/null 2>&1 || true
  log "starting the demo host $demo_host (bare Debian 13, systemd)"
  "$SELFHOST_ROOT/tests/harness/testhost.sh" "$demo_host" "$SELFHOST_BASE_IMAGE" \
    --publish "127.0.0.1:$demo_port:80" --label selfhost.demo=1
fi

log "deploying with playbooks/deploy.yml"
ansible-playbook playbooks/deploy.yml -i inventories/local --vault-password-file "$vault_pass"

url=http://127.0.0.1:$demo_port/
curl -fsS -o /dev/null --retry 10 --retry-delay 1 --retry-all-errors "$url" || die "the demo did not answer on $url"
cat <<MSG

The demo stack is up: open $url
  curl -s -X POST -H 'Content-Type: application/json' -d '{"name":"first item"}' ${url}api/items
  curl -s ${url}api/items
Remove it with: docker rm -fv $demo_host
MSG
