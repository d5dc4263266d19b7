"""Bad input and unsupported platforms fail with a clear message before the role changes anything.

The whole role runs (argument validation included) in check mode against localhost with faked
facts; a task that would change something reports "changed" there, so "nothing changed" is exact.
The `validate` entry point (tasks_from: validate, run by playbooks before any role) must catch the
same input.
"""

import pytest

from docker_playbook import FAKE_FACTS_TASK, VALIDATE_PLAYBOOK, fake_facts, run_playbook

DEBIAN12 = fake_facts("Debian", "12", "x86_64", "bookworm")
DEBIAN13 = fake_facts("Debian", "13", "x86_64", "trixie")

PLAYBOOK = (
    """
- name: Apply the docker role to bad input
  hosts: all
  gather_facts: false
  pre_tasks:
"""
    + FAKE_FACTS_TASK
    + """
  roles:
    - role: selfhost.stack.docker
"""
)

CASES = {
    "unknown-source": (
        {"selfhost_fake_facts": DEBIAN13, "docker_install_source": "podman"},
        ["docker_install_source", "docker, distro", "podman"],
    ),
    "daemon-options-string": (
        {"selfhost_fake_facts": DEBIAN13, "docker_daemon_options": "string"},
        ["docker_daemon_options", "dict"],
    ),
    "users-not-a-list": (
        {"selfhost_fake_facts": DEBIAN13, "docker_users": {"name": "deploy"}},
        ["docker_users", "list"],
    ),
    "login-without-password": (
        {"selfhost_fake_facts": DEBIAN13, "docker_registry_logins": [{"registry": "r.example:5000", "username": "u"}]},
        ["password", "docker_registry_logins"],
    ),
    "unsupported-os": (
        {"selfhost_fake_facts": fake_facts("CentOS", "9", "x86_64", "Stream")},
        ["does not support CentOS 9 (x86_64)", "Debian 12, Debian 13, Ubuntu 22.04, Ubuntu 24.04 on x86_64 or aarch64"],
    ),
    "unsupported-release": (
        {"selfhost_fake_facts": fake_facts("Ubuntu", "20.04", "x86_64", "focal")},
        ["does not support Ubuntu 20.04 (x86_64)", "Supported: Debian 12"],
    ),
    "unsupported-arch": (
        {"selfhost_fake_facts": fake_facts("Debian", "12", "armv7l", "bookworm")},
        ["does not support Debian 12 (armv7l)"],
    ),
    "no-systemd": (
        {"selfhost_fake_facts": fake_facts("Debian", "13", "x86_64", "trixie", service_mgr="sysvinit")},
        ["service manager sysvinit", "under systemd"],
    ),
    "distro-on-debian12": (
        {"selfhost_fake_facts": DEBIAN12, "docker_install_source": "distro"},
        ["'distro' is not available on Debian 12", "no", "Compose v2", "docker_install_source: docker"],
    ),
    "missing-user": (
        {"selfhost_fake_facts": DEBIAN13, "docker_users": ["selfhost-no-such-user"]},
        ["accounts that do not exist", "selfhost-no-such-user"],
    ),
}


@pytest.fixture(scope="module", params=["role", "validate"])
def bad_run(request, tmp_path_factory):
    playbook = PLAYBOOK if request.param == "role" else VALIDATE_PLAYBOOK
    hosts = {name: host_vars for name, (host_vars, _) in CASES.items()}
    run = run_playbook(tmp_path_factory.mktemp("play"), playbook, hosts)
    assert run.rc != 0
    return run


@pytest.mark.parametrize("name", list(CASES))
def test_fails_with_clear_message(bad_run, name):
    failed = [(task, res) for task, res in bad_run.host_tasks(name) if res.get("failed")]
    assert len(failed) == 1, bad_run.output[-3000:]
    msg = str(failed[0][1].get("msg"))
    for fragment in CASES[name][1]:
        assert fragment in msg, msg


@pytest.mark.parametrize("name", list(CASES))
def test_fails_before_any_change(bad_run, name):
    stats = bad_run.stats(name)
    assert stats["failures"] == 1
    assert stats["changed"] == 0
    ran = [task for task, res in bad_run.host_tasks(name) if not res.get("skipped")]
    assert ran[-1].startswith(("Validating arguments", "Check that")), ran
    assert not any(res.get("changed") for _, res in bad_run.host_tasks(name))
