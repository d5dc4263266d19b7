"""Fixtures of the default scenario's verify step."""

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))

from testlib import api, recap, run_playbook, vault_values  # noqa: E402,F401

SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
VAULT_FILE = SCENARIO / "inventory/group_vars/all/vault.yml"
HOST = "selfhost-default"
APP_DIR = "/opt/demo"


def deploy(*args):
    return run_playbook("playbooks/deploy.yml", *args)


@pytest.fixture(scope="session")
def secrets():
    values = list(vault_values(VAULT_FILE).values())
    assert len(values) == 2 and all(len(v) >= 20 for v in values)
    return values


def compose(host, *args):
    return host.run("docker compose --project-directory %s " + " ".join(["%s"] * len(args)), APP_DIR, *args)


def containers(host):
    """Name -> (state, health) of every container of the stack; empty while the engine starts."""
    listing = host.run("docker ps -a --filter label=com.docker.compose.project=demo --format '{{json .}}'")
    result = {}
    for line in listing.stdout.splitlines() if listing.rc == 0 else []:
        row = json.loads(line)
        inspect = host.run("docker inspect --format '{{json .State}}' %s", row["ID"])
        if inspect.rc == 0:
            state = json.loads(inspect.stdout)
            result[row["Names"]] = (state["Status"], state.get("Health", {}).get("Status"))
    return result


def wait_healthy(host, expected=5, timeout=240):
    deadline = time.monotonic() + timeout
    current = {}
    while time.monotonic() < deadline:
        current = containers(host)
        if len(current) == expected and all(v == ("running", "healthy") for v in current.values()):
            return current
        time.sleep(3)
    raise AssertionError(f"stack not healthy within {timeout}s: {current}")
