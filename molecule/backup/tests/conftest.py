"""Helpers for the backup scenario's verify step: playbooks, the stack, the backup directory."""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT / "molecule" / "shared"))
import testlib  # noqa: E402
from testlib import api  # noqa: E402,F401

VAULT_FILE = SCENARIO / "inventory/group_vars/all/vault.yml"
VAULT_PASSWORD = SCENARIO / "vault-password"
HOST = "selfhost-backup"
APP_DIR = "/opt/demo"
BACKUP_DIR = "/var/backups/demo"
UNIT = "selfhost-backup-demo"
STATUS_FILE = "/var/lib/node_exporter/textfile_collector/selfhost_backup_demo.prom"
BACKUP_NAME = re.compile(r"^demo-[0-9]{8}T[0-9]{6}Z\.dump(\.age)?$")


def run_playbook(playbook, *args):
    """Run a playbook of the collection against the scenario's host like a user would; output merged."""
    return testlib.run_playbook(f"playbooks/{playbook}", *args, vault_password=VAULT_PASSWORD)


def recap(output):
    """The PLAY RECAP counters of the scenario's host, e.g. {'ok': 20, 'changed': 0, ...}."""
    return testlib.recap(output, HOST)


@pytest.fixture(scope="session")
def secrets():
    values = testlib.vault_values(VAULT_FILE, VAULT_PASSWORD)
    secret_key = [line for line in values["vault_backup_age_identity"].splitlines() if line.startswith("AGE-SECRET-KEY-")]
    assert len(secret_key) == 1
    return [values["vault_app_db_password"], values["vault_app_redis_password"], secret_key[0]]


def compose(host, *args):
    """docker compose in the stack's directory; args are passed as separate, quoted words."""
    return host.run("docker compose --project-directory %s" + " %s" * len(args), APP_DIR, *args)


def psql(host, sql):
    """Run SQL in the live database (inside the postgres container) and return its rows."""
    out = host.check_output(
        "docker compose --project-directory %s exec -T postgres sh -c %s",
        APP_DIR, 'psql -X -q -A -t -F "|" -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "%s"' % sql.replace('"', '\\"'),
    )
    return [line.split("|") for line in out.splitlines() if line]


def items(host):
    return [(int(i), n) for i, n in psql(host, "SELECT id, name FROM items ORDER BY id")]


def containers(host):
    """Service -> (state, health) of every container of the stack."""
    out = host.check_output("docker compose --project-directory %s ps --all --format json", APP_DIR)
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {row["Name"]: (row["State"], row.get("Health", "")) for row in rows}


def wait_healthy(host, timeout=240):
    deadline = time.monotonic() + timeout
    current = {}
    while time.monotonic() < deadline:
        current = containers(host)
        if current and all(v == ("running", "healthy") for v in current.values()):
            return current
        time.sleep(3)
    raise AssertionError(f"stack not healthy within {timeout}s: {current}")


def backup_files(host):
    """Every file in the backup directory (names), hidden ones included."""
    return sorted(host.check_output("ls -A %s", BACKUP_DIR).split())


def backups(host):
    """The app's backups, newest first (names sort by time)."""
    return sorted((n for n in backup_files(host) if BACKUP_NAME.match(n)), reverse=True)


def status(host):
    """The node_exporter status file as {metric suffix: value}."""
    values = {}
    for line in host.file(STATUS_FILE).content_string.splitlines():
        match = re.match(r'^selfhost_backup_([a-z_]+)\{app="demo"\} (\S+)$', line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def start_backup_service(host):
    """What the timer does: start the oneshot service, which returns when the backup finished."""
    return host.run("systemctl start %s.service", UNIT)
