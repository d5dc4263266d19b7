"""A fleet behind a load balancer: rolling update, automatic revert, rollback, all under a
bounded load through the load balancer with zero failed requests.

Tests run in file order; each builds on the state the previous one left.
"""

import json
import uuid

from conftest import APP1, APP2, DB, LB
from testlib import Load, api, recap, run_playbook

LOAD_URL = "http://127.0.0.1:18080/api/items"
WRITTEN = []


def version_of(host):
    return api(host, "GET", "/api/version")[1]["version"]


def services(host):
    return sorted(host.check_output("docker ps --format '{{.Label \"com.docker.compose.service\"}}'").split())


def test_topology(hosts):
    assert services(hosts[APP1]) == services(hosts[APP2]) == ["backend", "frontend", "nginx"]
    assert services(hosts[DB]) == ["postgres", "redis"]
    assert services(hosts[LB]) == ["nginx"]
    assert hosts[LB].check_output("curl -fsS http://127.0.0.1/api/health").count('"ok"') >= 1


def test_items_written_through_the_lb_reach_the_shared_database(hosts):
    for _ in range(5):
        name = f"fleet-{uuid.uuid4().hex[:8]}"
        status, _ = api(hosts[LB], "POST", "/api/items", {"name": name})
        assert status == 201
        WRITTEN.append(name)
    for app in (APP1, APP2):
        names = [i["name"] for i in api(hosts[app], "GET", "/api/items")[1]["items"]]
        assert set(WRITTEN) <= set(names)


def test_update_to_v2_under_load_fails_no_request(hosts):
    with Load(LOAD_URL) as load:
        result = run_playbook("playbooks/update.yml", "-e", "app_version=v2")
        figures = load.stop()
    assert result.returncode == 0, result.output[-4000:]
    assert figures["requests"] > 100 and figures["failed"] == 0, figures
    assert version_of(hosts[APP1]) == version_of(hosts[APP2]) == "v2"
    # Hosts went one at a time: each was drained from the lb, switched and put back.
    assert result.output.count("Take this batch out of the load balancer") >= 2


def test_broken_update_reverts_the_first_host_and_stops(hosts):
    with Load(LOAD_URL) as load:
        result = run_playbook("playbooks/update.yml", "-e", "app_version=broken", "-e", "app_deploy_timeout=30")
        figures = load.stop()
    assert result.returncode != 0
    assert f"{APP1}: update to broken failed" in result.output
    assert "Reverted automatically" in result.output
    # The play stopped at the first host: the second only had the new images pulled.
    assert "APP_VERSION=v2\n" in hosts[APP2].file("/opt/demo/.env").content_string
    assert "broken" not in hosts[APP2].file("/opt/demo/audit.log").content_string
    assert figures["failed"] == 0, figures
    assert version_of(hosts[APP1]) == version_of(hosts[APP2]) == "v2"
    audit = [json.loads(line) for line in hosts[APP1].file("/opt/demo/audit.log").content_string.splitlines()]
    assert (audit[-1]["action"], audit[-1]["phase"]) == ("update", "end") and audit[-1]["result"].startswith("reverted")
    assert not hosts[APP1].file("/opt/demo/.deploy.lock").exists


def test_rollback_returns_every_host_to_v1(hosts):
    with Load(LOAD_URL) as load:
        result = run_playbook("playbooks/rollback.yml")
        figures = load.stop()
    assert result.returncode == 0, result.output[-4000:]
    assert figures["failed"] == 0, figures
    assert version_of(hosts[APP1]) == version_of(hosts[APP2]) == "v1"


def test_revert_all_returns_the_hosts_already_updated(hosts):
    """app2's copy of the v2 backend image is damaged (it is the broken build under the v2 tag):
    app1 takes v2, app2 fails its gate and reverts, and app_update_revert_all sends app1 back too."""
    v2, bad = (f"selfhost-registry:5000/selfhost/demo-backend:{tag}" for tag in ("v2", "broken"))
    hosts[APP2].check_output(f"docker pull -q {bad} && docker tag {bad} {v2}")
    try:
        with Load(LOAD_URL) as load:
            result = run_playbook("playbooks/update.yml", "-e", "app_version=v2", "-e", "app_deploy_timeout=30",
                                  "-e", "app_update_revert_all=true")
            figures = load.stop()
    finally:
        hosts[APP2].check_output(f"docker rmi {v2} && docker pull -q {v2}")
    assert result.returncode != 0
    assert f"{APP2}: update to v2 failed" in result.output
    assert f"went back to their previous release: {APP1}" in result.output
    assert figures["failed"] == 0, figures
    assert version_of(hosts[APP1]) == version_of(hosts[APP2]) == "v1"
    for app, action, result in ((APP1, "rollback", "ok"), (APP2, "update", "reverted")):
        audit = [json.loads(line) for line in hosts[app].file("/opt/demo/audit.log").content_string.splitlines()]
        assert (audit[-1]["action"], audit[-1]["phase"]) == (action, "end"), audit[-3:]
        assert audit[-1]["result"].startswith(result), audit[-3:]


def test_every_item_written_before_is_still_there(hosts):
    names = {i["name"] for i in api(hosts[LB], "GET", "/api/items")[1]["items"]}
    assert set(WRITTEN) <= names


def test_a_second_concurrent_deploy_is_refused(hosts):
    hosts[APP1].run_test("mkdir -p /opt/demo/.deploy.lock && echo 'someone since 10:00' > /opt/demo/.deploy.lock/owner")
    try:
        result = run_playbook("playbooks/update.yml", "-e", "app_version=v2")
        assert result.returncode != 0
        assert "another deploy holds the lock" in result.output
        assert recap(result.output, APP2)["changed"] == 0
    finally:
        hosts[APP1].run_test("rm -rf /opt/demo/.deploy.lock")


def test_app_hosts_without_db_are_refused(hosts, tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        f"all:\n  children:\n    app:\n      hosts:\n        {APP1}:\n          ansible_connection: community.docker.docker\n")
    result = run_playbook("playbooks/update.yml", "-e", "app_version=v2", "-e", "@molecule/default/inventory/group_vars/all/main.yml",
                          "-e", "@molecule/default/inventory/group_vars/all/vault.yml", inventory=str(inventory))
    assert result.returncode != 0
    assert "but none in group 'db'" in result.output
