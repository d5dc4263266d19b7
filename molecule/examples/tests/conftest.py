"""Fixtures of the examples scenario: the two example applications' test hosts."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
import yaml

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))

from testlib import recap, run_playbook  # noqa: E402,F401

SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
SHOP, MEDIA = "selfhost-ex-shop", "selfhost-ex-media"
SHOP_URL, MEDIA_URL = "http://127.0.0.1:18083", "http://127.0.0.1:18084"


@pytest.fixture(scope="session")
def hosts():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}") for name in (SHOP, MEDIA)}


@pytest.fixture(scope="session")
def shop(hosts):
    return hosts[SHOP]


@pytest.fixture(scope="session")
def media(hosts):
    return hosts[MEDIA]


@pytest.fixture(scope="session")
def secrets():
    values = yaml.safe_load((SCENARIO / "inventory/group_vars/all/secrets.yml").read_text())
    assert len(values) == 3 and all(len(v) >= 20 for v in values.values())
    return list(values.values())


def http(host, method, path, body=None, headers=(), port=80):
    """A request through the host's Nginx from inside the host: (status, headers text, body text)."""
    args = ["curl", "-sS", "-o", "/tmp/ex-body", "-D", "/tmp/ex-head", "-w", "%{http_code}", "-X", method]
    for header in headers:
        args += ["-H", header]
    if body is not None:
        args += ["--data-binary", body if isinstance(body, str) else json.dumps(body)]
        if not isinstance(body, str):
            args += ["-H", "Content-Type: application/json"]
    args.append("http://127.0.0.1:%d%s" % (port, path))
    status = int(host.check_output(" ".join(["%s"] * len(args)), *args))
    return status, host.file("/tmp/ex-head").content_string, host.file("/tmp/ex-body").content_string


def get_json(host, path, **kwargs):
    status, _, body = http(host, "GET", path, **kwargs)
    return status, json.loads(body or "null")


def containers(host, project):
    """name -> (state, health) of a project's containers."""
    out = host.run("docker ps -a --filter label=com.docker.compose.project=%s --format '{{.Names}}'", project)
    result = {}
    for name in out.stdout.split():
        state = json.loads(host.check_output("docker inspect --format '{{json .State}}' %s", name))
        result[name] = (state["Status"], (state.get("Health") or {}).get("Status"))
    return result


def wait_healthy(host, project, services, timeout=240):
    """Wait until each of `services` has one running, healthy container (a rollout renumbers them)."""
    deadline = time.monotonic() + timeout
    current = {}
    while time.monotonic() < deadline:
        current = containers(host, project) if host.run("docker info").rc == 0 else {}
        running = sorted(re.sub(r"^%s-(.+)-\d+$" % project, r"\1", name) for name in current)
        if running == sorted(services) and all(v == ("running", "healthy") for v in current.values()):
            return current
        time.sleep(3)
    raise AssertionError("%s not healthy within %ds: %s" % (project, timeout, current))


class ServiceEvents:
    """(time, action, container) of the starts and deaths of one service of one Compose project on
    a test host while the block runs, streamed as they happen: `docker events --since` reads the
    daemon's in-memory history, which keeps the last 256 events only, and the stacks'
    healthchecks fill it within a minute. The project label keeps another project's service of
    the same name out (the README model's shop runs beside node-media on its host)."""

    def __init__(self, host_name, project, service):
        self.command = ["docker", "exec", host_name, "timeout", "900", "docker", "events",
                        "--filter", "label=com.docker.compose.project=" + project,
                        "--filter", "label=com.docker.compose.service=" + service,
                        "--filter", "event=start", "--filter", "event=die",
                        "--format", "{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}}"]

    def __enter__(self):
        self.stream = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1)  # subscribed before the change starts
        return self

    def __exit__(self, *exc):
        time.sleep(1)
        self.stream.terminate()
        out, _ = self.stream.communicate(timeout=30)
        self.events = [(int(t), action, name) for t, action, name in (line.split() for line in out.splitlines())]


def restart_host(name):
    subprocess.run(["docker", "restart", name], check=True, capture_output=True, timeout=120)
    subprocess.run(["docker", "exec", name, "timeout", "120", "systemctl", "is-system-running", "--wait"],
                   capture_output=True, timeout=150, check=False)
