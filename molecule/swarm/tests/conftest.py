"""Fixtures of the swarm scenario: one testinfra host per test host."""

import json
import os
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))

from testlib import api  # noqa: E402

MANAGER, WORKER1, WORKER2 = "selfhost-swarm-manager", "selfhost-swarm-worker1", "selfhost-swarm-worker2"
NODES = (MANAGER, WORKER1, WORKER2)
# The stack test_app_swarm.py leaves (v2 and the token of its rolling update, which the broken
# version's revert restored): later runs of the converge keep it. rollback.yml runs last, at the end
# of test_swarm.py: the release it restores holds the secrets-hash labels of its time, so the next
# deploy would render the stack anew.
APP_STATE = ("-e", "app_version=v2", "-e", "swarm_api_token=swarm-token-Two-9c3d42")
# The stack changes from the manager only: the app tests' runs leave the workers out (the
# swarm's own tests run on every host).
ONLY_MANAGER = ("--limit", MANAGER)
LOAD_URL = "http://127.0.0.1:18086/api/version"
APP_DIR = "/opt/demo"


@pytest.fixture(scope="session")
def hosts():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}") for name in NODES}


def node_id(host):
    return host.check_output("docker info --format '{{.Swarm.NodeID}}'")


def node(manager, host):
    """`docker node inspect` of a test host's node, read on the manager."""
    return json.loads(manager.check_output("docker node inspect %s", node_id(host)))[0]


def served_versions(manager, count=6):
    return {api(manager, "GET", "/api/version")[1]["version"] for _ in range(count)}


def replicas(manager):
    return dict(line.split() for line in manager.check_output(
        "docker stack services demo --format '{{.Name}} {{.Replicas}}'").splitlines())


def audit_end(manager):
    lines = manager.file(f"{APP_DIR}/audit.log").content_string.splitlines()
    return [json.loads(line) for line in lines][-1]
