#!/usr/bin/env bash
# The whole test suite. Usage: scripts/test.sh [STEP ...]
#   steps: yamllint ansible-lint build sanity unit molecule molecule:<scenario>  (default: all)
# Each step runs even when an earlier one failed; the last line says how many passed and failed.
# The whole suite runs on two workers, each step's output printed when it ends; named steps run
# one after the other with their output live (SELFHOST_TEST_LANES=1 or 2 chooses). Logs stay in
# .cache/test-logs/<suite id>/; a step is stopped after SELFHOST_TEST_STEP_TIMEOUT seconds.
source "$(dirname "$0")/lib.sh"

"$SELFHOST_ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$SELFHOST_ROOT/.harness.env"
activate_venv
cd "$SELFHOST_ROOT" || exit 1

# Test hosts carry their step's run id ("<suite id>-<step>"), so a step removes its own hosts
# and nobody else's, and the suite removes what any of its steps left.
SELFHOST_SUITE_ID=${SELFHOST_RUN_ID:-$$-$(date +%s)}
remove_test_hosts() {
  local run=$1 ids
  mapfile -t ids < <(docker ps -a --filter label=selfhost.test=1 --format '{{.ID}} {{.Label "selfhost.run"}}' |
    awk -v run="$run" '$2 == run || index($2, run "-") == 1 { print $1 }')
  ((${#ids[@]} == 0)) || docker rm -fv "${ids[@]}" >/dev/null 2>&1 || true
}
trap 'remove_test_hosts "$SELFHOST_SUITE_ID"' EXIT

scenarios() {
  local f
  for f in molecule/*/molecule.yml; do basename "$(dirname "$f")"; done
}

has_plugins() { compgen -G 'plugins/*/*.py' >/dev/null; }

step_yamllint() { yamllint -s .; }
# Every shell script the repository tracks (by its shebang, or a `# shellcheck shell=` line in a
# sourced library) with .shellcheckrc: the role's helper scripts, the harness, the examples.
step_shellcheck() {
  local files
  mapfile -t files < <(git ls-files -z | xargs -0 grep -lIE '^(#!(/usr/bin/env |/bin/)(ba)?sh\b|# shellcheck shell=)' |
    grep -v '\.j2$')
  shellcheck "${files[@]}"
}
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
export -f step_yamllint step_shellcheck step_ansible_lint step_build step_sanity step_unit step_molecule

# Scenarios whose tests put the load generator on their hosts: the timing-sensitive lane.
uses_load() { grep -qs 'Load(' molecule/"$1"/tests/*.py; }

requested=("$@")
lanes=${SELFHOST_TEST_LANES:-$( ((${#requested[@]})) && echo 1 || echo 2)}
[[ $lanes == 1 || $lanes == 2 ]] || die "SELFHOST_TEST_LANES must be 1 or 2, not '$lanes'"
parallel=$((lanes == 2))
if ((${#requested[@]} == 0)); then
  requested=(yamllint shellcheck ansible-lint build)
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
# A step that does not put the load generator on its hosts runs at a lower CPU priority, so it
# never takes the CPU a switch under load needs.
step_in_time() {
  local run_id=$1 niceness=$2
  shift 2
  SELFHOST_RUN_ID=$run_id nice -n "$niceness" \
    timeout --kill-after=60 "$SELFHOST_TEST_STEP_TIMEOUT" bash -c '"$@"' "$run_id" "$@"
}

run_step() {
  local name=$1 start rc logfile run_id niceness=10
  shift
  logfile=$SELFHOST_TEST_LOGS/${name//[:\/]/_}.log
  run_id=$SELFHOST_SUITE_ID-${name//[:\/]/-}
  [[ $name == molecule:* ]] && uses_load "${name#molecule:}" && niceness=0
  log "step: $name (started at $(date +%T))"
  start=$SECONDS
  if ((parallel)); then
    step_in_time "$run_id" "$niceness" "$@" >"$logfile" 2>&1
    rc=$?
  else
    step_in_time "$run_id" "$niceness" "$@" 2>&1 | tee "$logfile"
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

run_named_step() {
  case $1 in
    molecule:*) run_step "$1" step_molecule "${1#molecule:}" ;;
    *) run_step "$1" "step_${1//-/_}" ;;
  esac
}

# Seconds each step took with both workers busy on a two-core machine (2026-12-07, whole suite
# 1839 s): the workers take the longest first, so neither is left with a long step at the end. A
# step not listed counts as 600.
declare -A step_seconds=(
  [molecule:swarm]=640 [molecule:fleet]=584 [molecule:tls]=543 [molecule:faults]=520 [molecule:backup]=397
  [molecule:examples]=361 [molecule:docker]=222 [molecule:default]=214 [unit]=131 [ansible-lint]=62
  [molecule:harness]=40 [sanity]=23 [yamllint]=2 [shellcheck]=2 [build]=1
)
longest_first() {
  local step
  for step in "$@"; do printf '%s %s\n' "${step_seconds[$step]:-600}" "$step"; done | sort -k1,1nr -s | cut -d' ' -f2
}

# One worker: takes the next step from the shared queue until none is left.
next_step() {
  {
    flock 8
    head -n 1 "$queue"
    sed -i 1d "$queue"
  } 8>"$queue.lock"
}
run_worker() {
  local step
  while step=$(next_step) && [[ -n $step ]]; do run_named_step "$step"; done
}

expanded=()
for step in "${requested[@]}"; do
  case $step in
    molecule) for s in $(scenarios); do expanded+=("molecule:$s"); done ;;
    molecule:*) [[ -f molecule/${step#molecule:}/molecule.yml ]] || die "no scenario '${step#molecule:}'"
      expanded+=("$step") ;;
    yamllint | shellcheck | ansible-lint | build | sanity | unit) expanded+=("$step") ;;
    *) die "unknown step '$step' (yamllint shellcheck ansible-lint build sanity unit molecule molecule:<scenario>)" ;;
  esac
done

set +e
suite_start=$SECONDS
if ((parallel)); then
  # The whole suite on a two-core machine: two workers, each step run by whichever is free.
  queue=$SELFHOST_TEST_LOGS/queue
  longest_first "${expanded[@]}" >"$queue"
  log "steps, longest first: $(tr '\n' ' ' <"$queue")"
  run_worker &
  worker1=$!
  run_worker &
  worker2=$!
  wait "$worker1" "$worker2"
else
  for step in "${expanded[@]}"; do run_named_step "$step"; done
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
