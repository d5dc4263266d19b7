"""Fixtures of the tls scenario's verify step: Pebble's root CA, TLS probes from inside the host."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))

from testlib import recap, run_playbook  # noqa: E402,F401

HOST = "selfhost-tls"
APP_DIR = "/opt/demo"
DOMAIN = "app.selfhost.test"
ROOT_PEM = "/root/pebble-root.pem"
LINEAGE = "/etc/letsencrypt/live/demo"
HELPER = "/usr/local/sbin/selfhost-tls-demo"


def deploy(*args):
    return run_playbook("playbooks/deploy.yml", *args)


def pebble(*command):
    return subprocess.run(["docker", "exec", "selfhost-pebble", *command],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def pebble_root_pem():
    """Pebble's root for the certificates it issues (PEM)."""
    root = pebble("curl", "-fsS", "--cacert", "/etc/pebble/tls/ca.pem", "https://127.0.0.1:15000/roots/0")
    assert "BEGIN CERTIFICATE" in root
    return root


def host_address(name=HOST):
    """The test host's address on the test network, which this machine reaches directly."""
    network = os.environ["SELFHOST_NETWORK"]
    return subprocess.run(
        ["docker", "inspect", "--format", '{{(index .NetworkSettings.Networks "%s").IPAddress}}' % network, name],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()


@pytest.fixture(scope="session")
def pebble_root():
    """Pebble's root for the certificates it issues, installed on the test host for curl."""
    root = pebble_root_pem()
    subprocess.run(["docker", "exec", "-i", HOST, "sh", "-c", "cat > " + ROOT_PEM],
                   input=root, text=True, check=True, timeout=60)
    return ROOT_PEM


def served(host, name=DOMAIN, port=443):
    """The certificate Nginx serves for NAME: {'serial': ..., 'issuer': ..., 'san': [...]}."""
    pem = host.check_output(
        "timeout 10 openssl s_client -connect 127.0.0.1:%s -servername %s </dev/null 2>/dev/null"
        " | openssl x509", str(port), name)
    return certificate_info(host, pem)


def certificate_info(host, pem):
    out = host.check_output("printf '%%s\\n' %s | openssl x509 -noout -serial -issuer -ext subjectAltName", pem)
    lines = out.splitlines()
    serial = next(l.split("=", 1)[1] for l in lines if l.startswith("serial="))
    issuer = next(l.split("=", 1)[1] for l in lines if l.startswith("issuer="))
    san = sorted(p.strip()[4:] for l in lines for p in l.split(",") if p.strip().startswith("DNS:"))
    return {"serial": serial, "issuer": issuer, "san": san}


def file_serial(host, path):
    return host.check_output("openssl x509 -in %s -noout -serial", path).split("=", 1)[1]


def https(host, url, *curl_args, resolve=DOMAIN):
    """(exit code, http code, ssl verify result) of curl against Nginx on 127.0.0.1:443."""
    cmd = host.run("curl -sS -o /dev/null -w '%%{http_code} %%{ssl_verify_result}' --max-time 15"
                   " --resolve %s:443:127.0.0.1 %s " + " ".join(curl_args), resolve, url)
    code, verify = (cmd.stdout.split() + ["", ""])[:2]
    return cmd.rc, code, verify


def wait_healthy(host, timeout=240):
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = host.check_output("docker ps -a --filter label=com.docker.compose.project=demo --format '{{.Names}} {{.Status}}'")
        rows = out.splitlines()
        if len(rows) == 5 and all("(healthy)" in r for r in rows):
            return rows
        time.sleep(3)
    raise AssertionError(f"stack not healthy within {timeout}s:\n{out}")
