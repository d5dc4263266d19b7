"""Helpers for the default scenario's verify step: run playbooks and read the Vault secrets."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
VAULT_FILE = SCENARIO / "inventory/group_vars/all/vault.yml"
VAULT_PASSWORD = SCENARIO / "vault-password"
HOST = "selfhost-default"
APP_DIR = "/opt/demo"


def run_playbook(*args, playbook="playbooks/deploy.yml"):
    """Run a playbook against the scenario's host like a user would; output merged."""
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(VAULT_PASSWORD), ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, playbook, *args],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )


def recap(output):
    """The PLAY RECAP counters of the scenario's host, e.g. {'ok': 20, 'changed': 0, ...}."""
    for line in output.splitlines():
        if line.startswith(HOST) and "ok=" in line:
            return {k: int(v) for k, v in (p.split("=") for p in line.split()[2:])}
    raise AssertionError("no PLAY RECAP line for " + HOST + " in:\n" + output[-3000:])


@pytest.fixture(scope="session")
def secrets():
    out = subprocess.run(
        ["ansible-vault", "view", "--vault-password-file", str(VAULT_PASSWORD), str(VAULT_FILE)],
        capture_output=True, text=True, check=True,
    ).stdout
    values = [v for k, v in yaml.safe_load(out).items() if k.startswith("vault_")]
    assert len(values) == 2 and all(len(v) >= 20 for v in values)
    return values


def compose(host, *args):
    return host.run("docker compose --project-directory %s %s", APP_DIR, " ".join(args))


def containers(host):
    """Name -> (state, health) of every container of the stack."""
    out = host.check_output("docker ps -a --filter label=com.docker.compose.project=demo --format '{{json .}}'")
    result = {}
    for line in out.splitlines():
        row = json.loads(line)
        cid = row["ID"]
        state = json.loads(host.check_output("docker inspect --format '{{json .State}}' %s", cid))
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


def api(host, method, path, body=None):
    cmd = "curl -sS -o /tmp/api-body -w '%%{http_code}' -X %s -H 'Content-Type: application/json'"
    args = [method]
    if body is not None:
        cmd += " -d %s"
        args.append(json.dumps(body))
    cmd += " http://127.0.0.1%s"
    args.append(path)
    status = int(host.check_output(cmd, *args))
    return status, json.loads(host.file("/tmp/api-body").content_string or "null")
