"""Fixtures of the fleet scenario: one testinfra host per inventory host, Pebble's root, and
HTTPS through the load balancer."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))

from testlib import Load, api  # noqa: E402

LB, APP1, APP2, DB = "selfhost-fleet-lb", "selfhost-fleet-app1", "selfhost-fleet-app2", "selfhost-fleet-db"
DOMAIN = "fleet.selfhost.test"
ROOT_PEM = "/root/pebble-root.pem"
# The load balancer's HTTPS port, published on this machine.
HTTPS_PORT = 18443
RESOLVE = f"{DOMAIN}:{HTTPS_PORT}:127.0.0.1"
LOAD_URL = f"https://{DOMAIN}:{HTTPS_PORT}/api/items"
# Inside the load balancer's host: its own HTTPS port, with Pebble's root.
LB_CURL = f"--cacert {ROOT_PEM} --resolve {DOMAIN}:443:127.0.0.1"


@pytest.fixture(scope="session")
def hosts():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")
            for name in (LB, APP1, APP2, DB)}


@pytest.fixture(scope="session")
def pebble_root():
    """Pebble's root for the certificates it issues: a file on this machine (the load generator)
    and ROOT_PEM on the load balancer's and the db host's test hosts (curl)."""
    root = subprocess.run(["docker", "exec", "selfhost-pebble", "curl", "-fsS", "--cacert", "/etc/pebble/tls/ca.pem",
                           "https://127.0.0.1:15000/roots/0"], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    assert "BEGIN CERTIFICATE" in root
    for host in (LB, DB):
        subprocess.run(["docker", "exec", "-i", host, "sh", "-c", "cat > " + ROOT_PEM],
                       input=root, text=True, check=True, timeout=60)
    local = Path(tempfile.mkdtemp(prefix="selfhost-fleet-")) / "pebble-root.pem"
    local.write_text(root)
    return local


def https_load(pebble_root, **kwargs):
    """The load generator over HTTPS through the load balancer, verifying its certificate."""
    return Load(LOAD_URL, cacert=pebble_root, resolve=RESOLVE, **kwargs)


def lb_api(hosts, method, path, body=None):
    """The API through the load balancer's HTTPS, from inside its host."""
    return api(hosts[LB], method, path, body, base=f"https://{DOMAIN}", curl_args=LB_CURL)


def haproxy(host, command):
    """An answer of HAProxy's runtime API on the load balancer."""
    return host.check_output("echo %s | socat -t 5 stdio unix-connect:/run/haproxy/admin.sock", command)


def haproxy_process(host):
    """(master PID, PID of the process answering the runtime API): a reload changes the second."""
    master = host.check_output("systemctl show haproxy.service --property=MainPID --value")
    worker = next(line.split()[1] for line in haproxy(host, "show info").splitlines() if line.startswith("Pid:"))
    return master, worker


def server_sessions(host, server):
    """Connections HAProxy has sent to one app host since it started (`show stat` stot)."""
    return int(haproxy(host, "show stat").split(f"app_hosts,{server},")[1].split(",")[5])


def server_states(host):
    """{server: (health 0-3, admin bits)} of the app hosts' backend."""
    out = haproxy(host, "show servers state app_hosts").splitlines()
    return {f[3]: (int(f[5]), int(f[6])) for f in (line.split() for line in out[2:]) if len(f) > 6}
