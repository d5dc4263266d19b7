#!/usr/bin/env python3
"""Times deploy.yml on one fresh test host: a cold deploy (bare Debian 13 to healthy stack,
Docker install included, images from the local registry) and a no-change re-run, against a
baseline play (fact gathering + 40 no-op `file` tasks) on the same host and connection.

Run after scripts/setup.sh, inside the venv:  python benchmarks/deploy.py [--runs N]
Prints the figures and writes benchmarks/results/deploy.json.
Targets (issue 4): cold deploy <= 90 s; re-run <= 1.5 x baseline.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, one_host_inventory, remove_host, start_host

SCENARIO = ROOT / "molecule" / "default"
HOST = "selfhost-bench-deploy"
NOOP_TASKS = 40


def timed_playbook(inventory, playbook, *extra):
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(SCENARIO / "vault-password"))
    start = time.monotonic()
    result = subprocess.run(["ansible-playbook", "-i", inventory, playbook, *extra], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"{playbook} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    changed = [line for line in result.stdout.splitlines() if line.startswith(HOST) and "changed=" in line]
    return elapsed, changed[-1].split()[3] if changed else "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the re-run and the baseline")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "deploy.json"))
    args = parser.parse_args()

    base_image = os.environ.get("SELFHOST_BASE_IMAGE") or sys.exit("source .harness.env first")
    inventory = one_host_inventory(HOST, "bench-deploy-")
    baseline = inventory.parent / "baseline.yml"
    tasks = "".join(
        f"    - name: No-op {i}\n      ansible.builtin.file:\n        path: /tmp\n        state: directory\n"
        for i in range(NOOP_TASKS))
    baseline.write_text(f"- name: Baseline\n  hosts: all\n  gather_facts: true\n  tasks:\n{tasks}")

    start_host(HOST, base_image)
    try:
        cold, cold_changed = timed_playbook(str(inventory), "playbooks/deploy.yml")
        reruns, baselines = [], []
        for _ in range(args.runs):
            elapsed, changed = timed_playbook(str(inventory), "playbooks/deploy.yml")
            if changed != "changed=0":
                sys.exit(f"the re-run was not a no-change run: {changed}")
            reruns.append(elapsed)
            baselines.append(timed_playbook(str(inventory), str(baseline))[0])
    finally:
        remove_host(HOST)

    rerun, base = statistics.median(reruns), statistics.median(baselines)
    figures = {
        "cold_deploy_s": round(cold, 1),
        "cold_deploy_changed": cold_changed,
        "rerun_s_median": round(rerun, 1),
        "rerun_s_all": [round(x, 1) for x in reruns],
        "baseline_s_median": round(base, 1),
        "baseline_s_all": [round(x, 1) for x in baselines],
        "baseline": f"gather_facts + {NOOP_TASKS} no-op file tasks, same host and connection",
        "rerun_over_baseline": round(rerun / base, 2),
        "targets": {"cold_deploy_s": 90, "rerun_over_baseline": 1.5},
        "pipelining": True,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"cold deploy (bare host -> healthy stack): {cold:6.1f} s   (target <= 90 s)")
    print(f"no-change re-run (median of {args.runs}):      {rerun:6.1f} s")
    print(f"baseline (facts + {NOOP_TASKS} no-op tasks):       {base:6.1f} s")
    print(f"re-run / baseline:                        {rerun / base:6.2f}   (target <= 1.5)")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
