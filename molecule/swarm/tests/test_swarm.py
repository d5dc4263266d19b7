"""The docker role forms a swarm from the inventory groups: one manager, two workers.

Tests run in file order and share the one swarm, after test_app_swarm.py: the demo stack runs
on it (which shows overlay networks, dnsrr endpoints and host-mode ports at work), and the runs
here keep it as those tests left it (conftest.APP_STATE). rollback.yml runs last.
"""

import json
import os
import time

from conftest import (APP_DIR, APP_STATE, LOAD_URL, MANAGER, NODES, ONLY_MANAGER, WORKER1, WORKER2, audit_end, node,
                      node_id, replicas, served_versions)
from testlib import Load, recap, run_playbook

CONVERGE = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")


def wait_for(condition, seconds=120, step=1.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


def test_every_host_is_a_node_in_the_role_its_group_gives(hosts):
    manager = hosts[MANAGER]
    listed = {n["ID"]: n for n in (json.loads(line) for line in
                                    manager.check_output("docker node ls --format '{{json .}}'").splitlines())}
    assert sorted(listed) == sorted(node_id(hosts[name]) for name in NODES)
    assert all(n["Status"] == "Ready" and n["Availability"] == "Active" for n in listed.values()), listed
    assert node(manager, hosts[MANAGER])["Spec"]["Role"] == "manager"
    assert node(manager, hosts[MANAGER])["ManagerStatus"]["Leader"] is True
    for worker in (WORKER1, WORKER2):
        assert node(manager, hosts[worker])["Spec"]["Role"] == "worker"


def test_node_labels_are_the_inventorys(hosts):
    manager = hosts[MANAGER]
    assert node(manager, hosts[WORKER1])["Spec"]["Labels"] == {"selfhost.data": "true", "selfhost.zone": "a"}
    assert node(manager, hosts[WORKER2])["Spec"].get("Labels") in ({}, None)


def test_live_restore_is_off_and_the_other_defaults_stay(hosts):
    for name in NODES:
        daemon = json.loads(hosts[name].file("/etc/docker/daemon.json").content_string)
        assert daemon["live-restore"] is False, name
        assert daemon["log-driver"] == "local" and daemon["no-new-privileges"] is True, daemon
        assert daemon["insecure-registries"] == ["selfhost-registry:5000"]
        assert hosts[name].check_output("docker info --format '{{.LiveRestoreEnabled}}'") == "false"


def test_a_node_that_left_and_a_scaled_down_service_are_put_back_and_no_join_token_is_printed(hosts):
    """worker2 leaves the swarm and is removed from it; a label is added to worker1 by hand; the
    backend is left at 0 tasks, as by a restore killed between its two scale steps. A plain run
    with -vvv puts all three back (the unchanged stack is deployed again, for the backend alone),
    and its output holds neither join token."""
    manager = hosts[MANAGER]
    gone = node_id(hosts[WORKER2])
    hosts[WORKER2].check_output("docker swarm leave")
    assert wait_for(lambda: manager.run("docker node rm %s", gone).rc == 0, seconds=60)
    manager.check_output("docker node update --label-add by-hand=1 %s", node_id(hosts[WORKER1]))
    manager.check_output("docker service scale --detach=false demo_backend=0")
    tokens = [manager.check_output("docker swarm join-token -q %s", kind) for kind in ("worker", "manager")]

    run = run_playbook(CONVERGE, "-vvv", *APP_STATE)
    assert run.returncode == 0, run.output[-4000:]
    for token in tokens:
        assert token not in run.output
    assert recap(run.output, WORKER2)["changed"] > 0
    assert hosts[WORKER2].check_output("docker info --format '{{.Swarm.LocalNodeState}}'") == "active"
    assert node(manager, hosts[WORKER2])["Spec"]["Role"] == "worker"
    assert node(manager, hosts[WORKER1])["Spec"]["Labels"] == {"selfhost.data": "true", "selfhost.zone": "a"}
    assert "backend: scaled to 0, the stack has 2" in run.output, run.output[-4000:]
    assert "the rendered stack changed" not in run.output
    assert replicas(manager)["demo_backend"] == "2/2"
    assert served_versions(manager) == {"v2"}


def test_a_swarm_node_left_out_of_the_groups_is_refused_before_its_daemon_breaks(hosts):
    """The manager run as a host of no swarm group: the role would write the default live-restore,
    with which a daemon in a swarm never starts again. It stops before, naming the groups."""
    manager = hosts[MANAGER]
    before = manager.file("/etc/docker/daemon.json").sha256sum
    run = run_playbook(CONVERGE, "--limit", MANAGER, "-e", '{"docker_swarm_managers_group": "nobody"}', *APP_STATE)
    assert run.returncode != 0
    assert "is a swarm node (state active)" in run.output and "docker_swarm_managers_group (nobody)" in run.output, \
        run.output[-3000:]
    assert recap(run.output, MANAGER)["changed"] == 0
    assert manager.file("/etc/docker/daemon.json").sha256sum == before
    assert manager.check_output("docker info --format '{{.Swarm.LocalNodeState}}'") == "active"


def test_a_check_mode_run_changes_nothing(hosts):
    run = run_playbook(CONVERGE, "--check", "--diff", *APP_STATE)
    assert run.returncode == 0, run.output[-4000:]
    for name in NODES:
        assert recap(run.output, name)["changed"] == 0, run.output[-4000:]


def test_rollback_returns_to_v1_under_load(hosts):
    """playbooks/rollback.yml: the release before v2 (the broken one was never recorded). Last: the
    release it restores holds the secrets-hash labels of its time, so the next deploy would render anew."""
    manager = hosts[MANAGER]
    with Load(LOAD_URL, timeline=True) as load:
        run = run_playbook("playbooks/rollback.yml", *ONLY_MANAGER, *APP_STATE[2:])
        figures = load.stop()
    assert run.returncode == 0, run.output[-4000:]
    print("swarm rollback.yml:", {k: figures[k] for k in ("requests", "failed", "p99_ms", "max_ms") if k in figures})
    assert figures["failed"] == 0, figures
    assert served_versions(manager) == {"v1"}
    assert manager.file(f"{APP_DIR}/releases/current").linked_to.endswith("-v1")
    assert audit_end(manager)["result"] == "ok"
