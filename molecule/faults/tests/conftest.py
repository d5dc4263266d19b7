"""Fixtures of the faults scenario: the demo stack on one host from the docker-host image."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))

from testlib import api, run_playbook  # noqa: E402

HOST = "selfhost-faults"
APP_DIR = "/opt/demo"
LOAD_URL = "http://127.0.0.1:18085/api/items"


def deploy(*args):
    return run_playbook("playbooks/deploy.yml", *args)


@pytest.fixture()
def extra_vars(tmp_path):
    """Writes variables to a 0600 file and returns the arguments passing it (-e @file)."""
    def write(**values):
        path = tmp_path / ("vars-%d.yml" % len(list(tmp_path.iterdir())))
        path.write_text(yaml.safe_dump(values))
        path.chmod(0o600)
        return ["-e", "@%s" % path]
    return write


def containers(host):
    """Name -> {id, state, health, service} of every container of the demo project."""
    out = host.run("docker ps -aq --filter label=com.docker.compose.project=demo")
    ids = out.stdout.split() if out.rc == 0 else []
    if not ids:
        return {}
    inspect = host.run("docker inspect " + " ".join(ids))
    result = {}
    for data in json.loads(inspect.stdout) if inspect.rc == 0 else []:
        labels = data["Config"]["Labels"] or {}
        if labels.get("com.docker.compose.oneoff") == "True":
            continue
        result[data["Name"].lstrip("/")] = {
            "id": data["Id"], "state": data["State"]["Status"],
            "health": (data["State"].get("Health") or {}).get("Status"),
            "service": labels.get("com.docker.compose.service")}
    return result


def wait_healthy(host, timeout=240, exact=True):
    """The stack's containers once all five services run healthy (with exact: one container each;
    without: at least one each, leaving out containers an interrupted switch created but never
    started, which the next run must remove)."""
    deadline = time.monotonic() + timeout
    current = {}
    while time.monotonic() < deadline:
        current = containers(host)
        if not exact:
            current = {n: c for n, c in current.items() if c["state"] != "created"}
        services = sorted(c["service"] for c in current.values())
        wanted = ["backend", "frontend", "nginx", "postgres", "redis"]
        if (services == wanted if exact else sorted(set(services)) == wanted) and all(
                (c["state"], c["health"]) == ("running", "healthy") for c in current.values()):
            return current
        time.sleep(2)
    raise AssertionError(f"stack not healthy within {timeout}s: {current}")


def served_version(host):
    return api(host, "GET", "/api/version")[1]["version"]


def item_names(host):
    return {i["name"] for i in api(host, "GET", "/api/items")[1]["items"]}


def live_files(host):
    """Checksums of the files a switch changes: equal before and after a run that changes nothing."""
    return host.check_output(f"cd {APP_DIR} && sha256sum compose.yaml .env nginx/* && readlink releases/current")
