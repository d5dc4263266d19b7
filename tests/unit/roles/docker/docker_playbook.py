"""Runs the real role with ansible-playbook against localhost (connection local, faked facts).

Every host of the generated inventory is this machine under another name, with its own
`selfhost_fake_facts`. The playbooks start with the `selfhost_fake_facts` module written below,
which returns them as facts the way any module does, so one ansible-playbook run covers a whole
platform matrix. Runs use --check: the role only reads this machine.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]

# Playbook-adjacent library/ module: sets the facts it is given, changes nothing.
FAKE_FACTS_MODULE = """#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts=module.params["facts"])


if __name__ == "__main__":
    main()
"""

# First task of every test playbook.
FAKE_FACTS_TASK = """
    - name: Fake this host's facts
      selfhost_fake_facts:
        facts: "{{ selfhost_fake_facts }}"
"""


# The docker role's `validate` entry point (what playbooks run before any change) after the fake facts.
VALIDATE_PLAYBOOK = (
    """
- name: Validate the input with the docker role's validate entry point
  hosts: all
  gather_facts: false
  tasks:
"""
    + FAKE_FACTS_TASK
    + """
    - name: Validate the docker role's inputs
      ansible.builtin.include_role:
        name: selfhost.stack.docker
        tasks_from: validate
"""
)


def fake_facts(distribution, version, architecture, release, service_mgr="systemd"):
    return {
        "distribution": distribution,
        "distribution_major_version": version.split(".")[0],
        "distribution_version": version,
        "distribution_release": release,
        "architecture": architecture,
        "service_mgr": service_mgr,
        "os_family": "Debian",
    }


class PlaybookRun:
    def __init__(self, result, rc, output):
        self.result, self.rc, self.output = result, rc, output

    def host_tasks(self, host):
        """(task name without role prefix, host result) in execution order."""
        for play in self.result["plays"]:
            for task in play["tasks"]:
                if host in task["hosts"]:
                    yield task["task"]["name"].rsplit(" : ", 1)[-1], task["hosts"][host]

    def task(self, host, name):
        found = [res for task_name, res in self.host_tasks(host) if task_name == name]
        assert len(found) == 1, f"{host}: task {name!r} ran {len(found)} times\n{self.output[-3000:]}"
        return found[0]

    def stats(self, host):
        return self.result["stats"][host]


def run_playbook(work, playbook, hosts, extra_args=(), groups=None):
    """Run `playbook` in --check --diff mode against `hosts` (name: host vars) in directory `work`;
    `groups` maps inventory group names to their hosts' names."""
    inventory = {
        "all": {
            "hosts": {
                name: {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                    **host_vars,
                }
                for name, host_vars in hosts.items()
            },
            "children": {group: {"hosts": dict.fromkeys(members)} for group, members in (groups or {}).items()},
        }
    }
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "playbook.yml").write_text(playbook)
    (work / "library").mkdir()
    (work / "library" / "selfhost_fake_facts.py").write_text(FAKE_FACTS_MODULE)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_FORKS="10",
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "--inventory",
        str(work / "inventory.yml"),
        "--check",
        "--diff",
        *extra_args,
        str(work / "playbook.yml"),
    ]
    proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=600, check=False)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook gave no JSON (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return PlaybookRun(result, proc.returncode, proc.stdout + proc.stderr)
