"""Fixtures of the fleet scenario: one testinfra host per inventory host."""

import os
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))

LB, APP1, APP2, DB = "selfhost-fleet-lb", "selfhost-fleet-app1", "selfhost-fleet-app2", "selfhost-fleet-db"


@pytest.fixture(scope="session")
def hosts():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")
            for name in (LB, APP1, APP2, DB)}
