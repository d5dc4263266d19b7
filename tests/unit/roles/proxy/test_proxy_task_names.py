"""Every task name of the proxy role templates on hosts where the role's block is skipped.

Ansible renders a task name that fails to template as `<< error 1 - ... >>` and goes on with a
warning ("Encountered 1 template error"), so a broken name passes every other test. The names
that broke were built from a registered result, which holds only the skip where the block does not
run: every host with proxy_tls_mode none, and a fleet's db hosts. Hosts where the block runs are
covered by the molecule scenarios (the tls scenario's output is checked for the same marker).
The role runs for real (argument validation, every task) in --check mode against localhost; it
only reads this machine.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]

PLAYBOOK = """
- name: Apply the proxy role
  hosts: all
  gather_facts: false
  roles:
    - role: selfhost.stack.proxy
"""

MODES = {
    "none": {"proxy_tls_mode": "none"},
    "db-host-of-an-acme-fleet": {"proxy_tls_mode": "acme", "proxy_domains": ["app.selfhost.test"],
                                 "app_host_services": ["postgres", "redis"]},
}


def run_role(work, host_vars):
    inventory = {"all": {"hosts": {"proxy-unit": {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "app_project_dir": str(work / "project"),
        **host_vars,
    }}}}
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "playbook.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_LOCAL_TEMP=str(work / "tmp"))
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "--check",
           "--inventory", str(work / "inventory.yml"), str(work / "playbook.yml")]
    proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_task_name_templates(tmp_path, mode):
    rc, output = run_role(tmp_path, MODES[mode])
    assert rc == 0, output[-3000:]
    names = re.findall(r"^TASK \[selfhost\.stack\.proxy : (.*)\] \**$", output, re.MULTILINE)
    # The package task is the one that broke: it must be among the names checked.
    assert any(n.startswith("Install the missing ones of openssl") for n in names), names
    broken = [n for n in names if "<< error" in n]
    assert not broken, broken
    assert "template error" not in output, output[-3000:]
