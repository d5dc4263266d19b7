"""daemon.json as the role's daemon tasks and template would write it: defaults, merge, removal."""

import json

import pytest

from docker_playbook import FAKE_FACTS_TASK, fake_facts, run_playbook

PLAYBOOK = (
    """
- name: Render daemon.json
  hosts: all
  gather_facts: false
  vars:
    # Normally set by packages.yml; true keeps the service and restart tasks off this machine.
    __docker_engine_pending: true
  tasks:
"""
    + FAKE_FACTS_TASK
    + """
    - name: Run the role's daemon tasks
      ansible.builtin.include_role:
        name: selfhost.stack.docker
        tasks_from: daemon.yml
"""
)

DEFAULTS = {
    "log-driver": "local",
    "log-opts": {"max-size": "10m", "max-file": "5"},
    "live-restore": True,
    "no-new-privileges": True,
    "userland-proxy": False,
    "icc": False,
}
CASES = {
    "defaults": ({}, DEFAULTS),
    "added-options": (
        {"insecure-registries": ["registry.lan:5000"], "default-address-pools": [{"base": "10.210.0.0/16", "size": 24}]},
        {**DEFAULTS, "insecure-registries": ["registry.lan:5000"], "default-address-pools": [{"base": "10.210.0.0/16", "size": 24}]},
    ),
    # A top-level key replaces the default one whole; null removes a default.
    "replaced-and-removed": (
        {"log-driver": "journald", "log-opts": None, "live-restore": False, "icc": None},
        {"log-driver": "journald", "live-restore": False, "no-new-privileges": True, "userland-proxy": False},
    ),
    # A swarm node (README "Swarm nodes"): live-restore off, off or left out; the rest of the defaults stay.
    "swarm-node-false": ({"live-restore": False}, {**DEFAULTS, "live-restore": False}),
    "swarm-node-null": ({"live-restore": None}, {k: v for k, v in DEFAULTS.items() if k != "live-restore"}),
    "partial-log-opts": (
        {"log-opts": {"max-size": "50m"}},
        {**DEFAULTS, "log-opts": {"max-size": "50m"}},
    ),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    facts = fake_facts("Debian", "13", "x86_64", "trixie")
    hosts = {name: {"selfhost_fake_facts": facts, "docker_daemon_options": options} for name, (options, _) in CASES.items()}
    run = run_playbook(tmp_path_factory.mktemp("play"), PLAYBOOK, hosts)
    assert run.rc == 0, run.output[-4000:]
    return run


@pytest.mark.parametrize("name", list(CASES))
def test_daemon_json(rendered, name):
    result = rendered.task(name, "Write daemon.json")
    (written,) = result["invocation"]["module_args"]["files"]
    assert written["path"] == "/etc/docker/daemon.json" and written["mode"] == "0644"
    # dockerd checks the new content before it replaces the live file.
    assert "dockerd --validate --config-file %s" in written["validate"]
    (diff,) = [d for d in result["diff"] if d["after_header"] == "/etc/docker/daemon.json"]
    assert json.loads(diff["after"]) == CASES[name][1]

