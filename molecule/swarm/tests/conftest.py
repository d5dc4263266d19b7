"""Fixtures of the swarm scenario: one testinfra host per test host."""

import json
import os
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))

MANAGER, WORKER1, WORKER2 = "selfhost-swarm-manager", "selfhost-swarm-worker1", "selfhost-swarm-worker2"
NODES = (MANAGER, WORKER1, WORKER2)
# The stack test_app_swarm.py leaves (v1 after rollback.yml, the rotated token): later runs of the
# converge keep it.
APP_STATE = ("-e", "app_version=v1", "-e", "swarm_api_token=swarm-token-Two-9c3d42")


@pytest.fixture(scope="session")
def hosts():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}") for name in NODES}


def node_id(host):
    return host.check_output("docker info --format '{{.Swarm.NodeID}}'")


def node(manager, host):
    """`docker node inspect` of a test host's node, read on the manager."""
    return json.loads(manager.check_output("docker node inspect %s", node_id(host)))[0]
