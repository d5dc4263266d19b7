#!/usr/bin/env bash
# The whole test suite. Usage: scripts/test.sh [STEP ...]
#   steps: yamllint ansible-lint build sanity unit molecule molecule:<scenario>  (default: all)
# Each step runs even when an earlier one failed; the last line says how many passed and failed.
source "$(dirname "$0")/lib.sh"

"$SELFHOST_ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$SELFHOST_ROOT/.harness.env"
activate_venv
cd "$SELFHOST_ROOT"

# Test hosts carry this run's id, so a run removes its own hosts and nobody else's.
SELFHOST_RUN_ID=${SELFHOST_RUN_ID:-$$-$(date +%s)}
export SELFHOST_RUN_ID
remove_test_hosts() {
  local ids
  ids=$(docker ps -aq --filter label=selfhost.test=1 --filter "label=selfhost.run=$SELFHOST_RUN_ID")
  [[ -z $ids ]] || docker rm -fv $ids >/dev/null 2>&1 || true
}
trap remove_test_hosts EXIT

scenarios() {
  local f
  for f in molecule/*/molecule.yml; do basename "$(dirname "$f")"; done
}

has_plugins() { compgen -G 'plugins/*/*.py' >/dev/null; }

step_yamllint() { yamllint -s .; }
step_ansible_lint() { ansible-lint; }
step_build() {
  local out
  out=$(mktemp -d)
  ansible-galaxy collection build --force --output-path "$out" . && ls "$out"/selfhost-stack-*.tar.gz
  rm -rf "$out"
}
step_sanity() {
  # ansible-test bootstraps pip in its venvs with a script from a host these machines cannot
  # reach; the stand-in installs pip from ensurepip and the package index instead (pip 24.2
  # is what the pinned ansible-core's ansible-test asks for with Python 3.11).
  mkdir -p ~/.ansible/test/cache
  cp tests/harness/ansible-test/get_pip.py ~/.ansible/test/cache/get_pip_24_2.py
  # ansible-test needs the collection at .../ansible_collections/<namespace>/<name>.
  local tree
  tree=$(mktemp -d)
  mkdir -p "$tree/ansible_collections/selfhost"
  git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- . "$tree/ansible_collections/selfhost/stack/"
  (cd "$tree/ansible_collections/selfhost/stack" && ansible-test sanity --python 3.11 --color no plugins/)
  local rc=$?
  rm -rf "$tree"
  return $rc
}
step_unit() { python -m pytest -p no:cacheprovider tests/unit; }
step_molecule() { molecule test -s "$1"; }

requested=("$@")
if ((${#requested[@]} == 0)); then
  requested=(yamllint ansible-lint build)
  has_plugins && requested+=(sanity)
  [[ -d tests/unit ]] && requested+=(unit)
  requested+=(molecule)
fi

passed=0 failed=0 summary=()
run_step() {
  local name=$1 start rc
  shift
  log "step: $name"
  start=$SECONDS
  "$@"
  rc=$?
  if ((rc == 0)); then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  summary+=("$(printf '%-28s %-4s %4ss' "$name" "$([[ $rc == 0 ]] && echo ok || echo FAIL)" $((SECONDS - start)))")
  remove_test_hosts
}

set +e
for step in "${requested[@]}"; do
  case $step in
    molecule) for s in $(scenarios); do run_step "molecule:$s" step_molecule "$s"; done ;;
    molecule:*) run_step "$step" step_molecule "${step#molecule:}" ;;
    yamllint | ansible-lint | build | sanity | unit) run_step "$step" "step_${step//-/_}" ;;
    *) die "unknown step '$step' (yamllint ansible-lint build sanity unit molecule molecule:<scenario>)" ;;
  esac
done

printf '\n%s\n' "${summary[@]}"
echo "suite: $passed passed, $failed failed"
((failed == 0))
