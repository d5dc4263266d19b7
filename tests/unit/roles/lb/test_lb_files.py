"""The lb role's helper, haproxy.service's drop-in and the app hosts' CA as service.yml would
write them: one selfhost.stack.file_set call, the CA only with lb_backend_tls.

One ansible-playbook run (--check --diff, json callback, connection local, a stand-in systemctl
that says no reload is pending): every case is a host of its own; the role only reads this machine.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]

HELPER = "/usr/local/sbin/selfhost-lb"
DROPIN = "/etc/systemd/system/haproxy.service.d/selfhost.conf"
CA_FILE = "/etc/haproxy/selfhost-backend-ca.pem"
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
CASES = {
    "plain": {},
    # Trailing blank lines in the input: the file ends with exactly one newline.
    "backend-tls": {"lb_backend_tls": True, "lb_backend_port": 443, "lb_backend_ca": CA + "\n\n"},
}
TASK = "selfhost.stack.lb : Install the load balancer's helper, haproxy.service's drop-in and the app hosts' CA"

PLAYBOOK = """
- name: The lb role's service files
  hosts: all
  gather_facts: false
  tasks:
    - name: Run the role's service tasks
      ansible.builtin.include_role:
        name: selfhost.stack.lb
        tasks_from: service.yml
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    work = tmp_path_factory.mktemp("lb-files")
    (work / "bin").mkdir()
    (work / "bin" / "systemctl").write_text("#!/bin/sh\necho no\n")
    (work / "bin" / "systemctl").chmod(0o755)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"vars": local, "hosts": {f"case-{name}": extra for name, extra in CASES.items()}}}
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (work / "playbook.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
               PATH=str(work / "bin") + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "--check", "--diff",
                           "-i", str(work / "hosts.yml"), str(work / "playbook.yml")],
                          env=env, cwd=work, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    output = json.loads(proc.stdout)
    (task,) = [t for play in output["plays"] for t in play["tasks"] if t["task"]["name"] == TASK]
    return task["hosts"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_call_writes_the_helper_the_drop_in_and_the_ca(written, case):
    args = written[f"case-{case}"]["invocation"]["module_args"]
    assert [(d["path"], d["mode"]) for d in args["directories"]] == [("/etc/systemd/system/haproxy.service.d", "0755")]
    files = {f["path"]: f for f in args["files"]}
    expected = [HELPER, DROPIN] + ([CA_FILE] if case == "backend-tls" else [])
    assert list(files) == expected
    assert [files[p]["mode"] for p in expected] == ["0755", "0644", "0644"][:len(expected)]
    assert all((f["owner"], f["group"]) == ("0", "0") for f in files.values())
    assert files[HELPER]["content"].startswith("#!/bin/sh\n# Ansible managed\n")
    assert "config=/etc/haproxy/haproxy.cfg\n" in files[HELPER]["content"]
    assert f"ExecReload={HELPER} save-state\n" in files[DROPIN]["content"]
    if case == "backend-tls":
        assert files[CA_FILE]["content"] == CA + "\n"
