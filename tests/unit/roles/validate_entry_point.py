"""Runs a role's `validate` entry point with ansible-playbook (json callback, connection local)
for an inventory where every case is a host of its own; tells which hosts failed and why.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def run_validate(work, role, inventory, hosts="all"):
    """(failures, stats): failures maps a failed host to its messages (the task's, its failed
    items', and argument_errors of the role's argument spec); stats is the run's per-host stats."""
    inventory["all"].setdefault("vars", {}).update(
        ansible_connection="local", ansible_python_interpreter=sys.executable)
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (work / "validate.yml").write_text(yaml.safe_dump([{
        "name": "Validate", "hosts": hosts, "gather_facts": False,
        "tasks": [{"name": f"Validate the {role} role's inputs",
                   "ansible.builtin.include_role": {"name": f"selfhost.stack.{role}", "tasks_from": "validate"}}]}]))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    run = subprocess.run(["ansible-playbook", "-i", str(work / "hosts.yml"), str(work / "validate.yml")],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    result = json.loads(run.stdout)
    failures = {}
    for task in result["plays"][0]["tasks"]:
        for host, res in task["hosts"].items():
            if res.get("failed"):
                items = " ".join(r.get("msg", "") for r in res.get("results", []) if r.get("failed"))
                failures[host] = " ".join([res.get("msg", ""), items, json.dumps(res.get("argument_errors", ""))])
    return failures, result["stats"]
