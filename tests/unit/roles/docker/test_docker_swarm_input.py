"""A swarm the inventory groups describe wrongly is refused by the docker role's `validate` entry
point (which playbooks run before any change), with a message naming the variable or group.

Each case is a swarm of its own: its hosts name their own manager and worker groups.
"""

import pytest

from docker_playbook import VALIDATE_PLAYBOOK, fake_facts, run_playbook

DEBIAN13 = fake_facts("Debian", "13", "x86_64", "trixie")

# case: (hosts of its managers group, hosts of its workers group, extra vars, host to look at, message parts).
# The groups are named after the first host's prefix: <prefix>-managers, <prefix>-workers.
CASES = {
    "both-roles": (["both-m1"], ["both-m1", "both-w1"], {}, "both-m1",
                   ["both-m1 is in both docker_swarm_managers_group (both-managers)", "both-workers"]),
    "no-manager": ([], ["none-w1"], {}, "none-w1", ["docker_swarm_workers_group (none-workers) has hosts",
                                                    "docker_swarm_managers_group (none-managers) has none"]),
    "even-managers": (["even-m1", "even-m2"], [], {}, "even-m2",
                      ["docker_swarm_managers_group (even-managers) has 2 hosts", "odd number"]),
    "labels-not-strings": (["labels-m1"], [], {"docker_swarm_node_labels": {"selfhost.data": True, "zone": "a"}},
                           "labels-m1", ["docker_swarm_node_labels of labels-m1", "not strings: selfhost.data"]),
    "live-restore-on": (["restore-m1"], [], {"docker_daemon_options": {"live-restore": True}}, "restore-m1",
                        ["docker_daemon_options sets live-restore to true on restore-m1", "swarm manager"]),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    hosts, groups = {}, {}
    for managers, workers, extra, _, _ in CASES.values():
        prefix = (managers + workers)[0].split("-")[0]
        names = {"docker_swarm_managers_group": f"{prefix}-managers", "docker_swarm_workers_group": f"{prefix}-workers"}
        groups[names["docker_swarm_managers_group"]] = managers
        groups[names["docker_swarm_workers_group"]] = workers
        for host in managers + workers:
            hosts[host] = {"selfhost_fake_facts": DEBIAN13, "docker_swarm_advertise_addr": "127.0.0.1",
                           **names, **extra}
    # A good swarm: one manager, two workers, string labels; and a host in no swarm.
    groups.update({"good-managers": ["good-m1"], "good-workers": ["good-w1", "good-w2"]})
    for host in ("good-m1", "good-w1", "good-w2"):
        hosts[host] = {"selfhost_fake_facts": DEBIAN13, "docker_swarm_advertise_addr": "127.0.0.1",
                       "docker_swarm_managers_group": "good-managers", "docker_swarm_workers_group": "good-workers",
                       "docker_swarm_node_labels": {"selfhost.data": "true"} if host == "good-w1" else {}}
    hosts["loner"] = {"selfhost_fake_facts": DEBIAN13}
    return run_playbook(tmp_path_factory.mktemp("swarm"), VALIDATE_PLAYBOOK, hosts, groups=groups)


@pytest.mark.parametrize("case", list(CASES))
def test_refused_naming_the_variable(run, case):
    host, parts = CASES[case][3], CASES[case][4]
    failed = [res for _, res in run.host_tasks(host) if res.get("failed")]
    assert len(failed) == 1, run.output[-3000:]
    message = " ".join(str(failed[0].get("msg")).split())
    for part in parts:
        assert part in message, message
    assert run.stats(host)["changed"] == 0


def test_a_good_swarm_and_a_host_outside_any_pass(run):
    for host in ("good-m1", "good-w1", "good-w2", "loner"):
        assert run.stats(host)["failures"] == 0, [res for _, res in run.host_tasks(host) if res.get("failed")]
