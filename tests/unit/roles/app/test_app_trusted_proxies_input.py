"""app_trusted_proxies is checked in the app role's `validate` entry point (before any change),
naming the variable and the entries Nginx would refuse in its geo block and set_real_ip_from.

One ansible-playbook run (json callback, connection local): every case is a host of its own.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]

BAD = {
    "host-name": (["lb.example.com", "10.0.0.0/24"], ["lb.example.com"]),
    "prefix-too-long": (["10.0.0.5/40"], ["10.0.0.5/40"]),
    "not-a-list": ("10.0.0.5", ["10.0.0.5"]),
}
GOOD = {
    "empty": [],
    "addresses-and-ranges": ["10.0.0.5", "10.0.1.0/24", "fd00::/64", "::1"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("app-trusted-proxies")
    hosts = {f"bad-{name}": {"app_trusted_proxies": value} for name, (value, _) in BAD.items()}
    hosts.update({f"good-{name}": {"app_trusted_proxies": value} for name, value in GOOD.items()})
    inventory = {"all": {"hosts": hosts, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "app_db_password": "unit-db", "app_redis_password": "unit-redis"}}}
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (work / "validate.yml").write_text(yaml.safe_dump([{
        "name": "Validate", "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "Validate the app role's inputs",
                   "ansible.builtin.include_role": {"name": "selfhost.stack.app", "tasks_from": "validate"}}]}]))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    run = subprocess.run(["ansible-playbook", "-i", str(work / "hosts.yml"), str(work / "validate.yml")],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    result = json.loads(run.stdout)
    failures = {host: res.get("msg", "") for task in result["plays"][0]["tasks"]
                for host, res in task["hosts"].items() if res.get("failed")}
    return failures


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_entries_fail_naming_the_variable_and_the_entry(results, case):
    message = results.get(f"bad-{case}")
    assert message is not None, f"{case} was accepted"
    assert message.startswith("app_trusted_proxies must list"), message
    for text in BAD[case][1]:
        assert text in message, message


@pytest.mark.parametrize("case", sorted(GOOD))
def test_addresses_and_ranges_pass(results, case):
    assert f"good-{case}" not in results, results.get(f"good-{case}")
