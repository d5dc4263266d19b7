#!/usr/bin/env bash
# The whole test suite. Usage: scripts/test.sh [STEP ...]
#   steps: yamllint ansible-lint build sanity unit molecule molecule:<scenario>  (default: all)
# Each step runs even when an earlier one failed; the last line says how many passed and failed.
# The whole suite runs in two lanes, each step's output printed when it ends; named steps run
# one after the other with their output live (SELFHOST_TEST_LANES=1 or 2 chooses). Logs stay in
# .cache/test-logs/<suite id>/; a step is stopped after SELFHOST_TEST_STEP_TIMEOUT seconds.
source "$(dirname "$0")/lib.sh"

"$SELFHOST_ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$SELFHOST_ROOT/.harness.env"
activate_venv
cd "$SELFHOST_ROOT"

# Test hosts carry their step's run id ("<suite id>-<step>"), so a step removes its own hosts
# and nobody else's, and the suite removes what any of its steps left.
SELFHOST_SUITE_ID=${SELFHOST_RUN_ID:-$$-$(date +%s)}
remove_test_hosts() {
  local run=$1 ids
  ids=$(docker ps -a --filter label=selfhost.test=1 --format '{{.ID}} {{.Label "selfhost.run"}}' |
    awk -v run="$run" '$2 == run || index($2, run "-") == 1 { print $1 }')
  [[ -z $ids ]] || docker rm -fv $ids >/dev/null 2>&1 || true
}
trap 'remove_test_hosts "$SELFHOST_SUITE_ID"' EXIT

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
export -f step_yamllint step_ansible_lint step_build step_sanity step_unit step_molecule

# Scenarios whose tests put the load generator on their hosts: the timing-sensitive lane.
uses_load() { grep -qs 'Load(' molecule/"$1"/tests/*.py; }

requested=("$@")
lanes=${SELFHOST_TEST_LANES:-$( ((${#requested[@]})) && echo 1 || echo 2)}
[[ $lanes == 1 || $lanes == 2 ]] || die "SELFHOST_TEST_LANES must be 1 or 2, not '$lanes'"
parallel=$((lanes == 2))
if ((${#requested[@]} == 0)); then
  requested=(yamllint ansible-lint build)
  has_plugins && requested+=(sanity)
  [[ -d tests/unit ]] && requested+=(unit)
  requested+=(molecule)
fi

# Each step writes its output to a log; the suite prints a step's log whole when it ends (two
# lanes never interleave) and the tails of failed steps again at the very end.
SELFHOST_TEST_LOGS=${SELFHOST_TEST_LOGS:-$SELFHOST_ROOT/.cache/test-logs/$SELFHOST_SUITE_ID}
SELFHOST_TEST_STEP_TIMEOUT=${SELFHOST_TEST_STEP_TIMEOUT:-2700}
mkdir -p "$SELFHOST_TEST_LOGS"
results=$SELFHOST_TEST_LOGS/results
: >"$results"

# A step that hangs is stopped, so the suite still ends and says which step it was.
step_in_time() {
  local run_id=$1
  shift
  SELFHOST_RUN_ID=$run_id timeout --kill-after=60 "$SELFHOST_TEST_STEP_TIMEOUT" bash -c '"$@"' "$run_id" "$@"
}

run_step() {
  local name=$1 start rc logfile run_id
  shift
  logfile=$SELFHOST_TEST_LOGS/${name//[:\/]/_}.log
  run_id=$SELFHOST_SUITE_ID-${name//[:\/]/-}
  log "step: $name (started at $(date +%T))"
  start=$SECONDS
  if ((parallel)); then
    step_in_time "$run_id" "$@" >"$logfile" 2>&1
    rc=$?
  else
    step_in_time "$run_id" "$@" 2>&1 | tee "$logfile"
    rc=${PIPESTATUS[0]}
  fi
  ((rc == 124)) && echo "step $name stopped after ${SELFHOST_TEST_STEP_TIMEOUT}s (SELFHOST_TEST_STEP_TIMEOUT)" >>"$logfile"
  remove_test_hosts "$run_id"
  {
    flock 9
    ((parallel)) && cat "$logfile"
    log "step: $name $([[ $rc == 0 ]] && echo ok || echo "FAILED (rc $rc)") in $((SECONDS - start))s"
  } 9>"$SELFHOST_TEST_LOGS/.print" 2>&1
  printf '%-28s %-4s %5ss\n' "$name" "$([[ $rc == 0 ]] && echo ok || echo FAIL)" $((SECONDS - start)) >>"$results"
  ((rc == 0)) || echo "$name $logfile" >>"$SELFHOST_TEST_LOGS/failed"
}

# The steps of one lane, in order; each runs even when an earlier one failed.
run_lane() {
  local step
  for step in "$@"; do
    case $step in
      molecule:*) run_step "$step" step_molecule "${step#molecule:}" ;;
      *) run_step "$step" "step_${step//-/_}" ;;
    esac
  done
}

expanded=()
for step in "${requested[@]}"; do
  case $step in
    molecule) for s in $(scenarios); do expanded+=("molecule:$s"); done ;;
    molecule:*) [[ -f molecule/${step#molecule:}/molecule.yml ]] || die "no scenario '${step#molecule:}'"
      expanded+=("$step") ;;
    yamllint | ansible-lint | build | sanity | unit) expanded+=("$step") ;;
    *) die "unknown step '$step' (yamllint ansible-lint build sanity unit molecule molecule:<scenario>)" ;;
  esac
done

set +e
suite_start=$SECONDS
if ((parallel)); then
  # The whole suite in two lanes on a two-core machine: the scenarios under load, one after
  # the other at normal priority, and beside them everything else at a lower one, so the other
  # lane's controller never takes the CPU a load test's switch needs.
  loaded=() others=()
  for step in "${expanded[@]}"; do
    if [[ $step == molecule:* ]] && uses_load "${step#molecule:}"; then loaded+=("$step"); else others+=("$step"); fi
  done
  log "lane 1 (under load): ${loaded[*]}"
  log "lane 2 (nice 10): ${others[*]}"
  run_lane "${loaded[@]}" &
  lane1=$!
  (renice -n 10 -p "$BASHPID" >/dev/null && run_lane "${others[@]}") &
  lane2=$!
  wait "$lane1" "$lane2"
else
  run_lane "${expanded[@]}"
fi

printf '\n'
cat "$results"
if [[ -s $SELFHOST_TEST_LOGS/failed ]]; then
  while read -r name logfile; do
    printf '\n==> the end of the failed step %s (whole log above and in %s)\n' "$name" "$logfile"
    # pytest's failures and errors first (molecule's recap follows them), then the end.
    plain=$(sed 's/\x1b\[[0-9;]*m//g' "$logfile")
    grep -aE '(^|│ )(E |> |FAILED|ERROR|fatal:)' <<<"$plain" | tail -n 60
    awk '/short test summary info/, / in [0-9.]+s/' <<<"$plain" | tail -n 30
    tail -n 40 "$logfile"
  done <"$SELFHOST_TEST_LOGS/failed"
fi
passed=$(grep -c ' ok ' "$results")
failed=$(grep -c ' FAIL ' "$results")
echo "suite: $passed passed, $failed failed in $((SECONDS - suite_start))s"
((failed == 0))
