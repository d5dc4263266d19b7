"""Helpers the scenarios' testinfra tests share: run playbooks as a user would, read the
PLAY RECAP, call the API inside a host, and run the bounded load generator."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
VAULT_PASSWORD = PROJECT / "molecule" / "default" / "vault-password"
LOADGEN = PROJECT / "tests" / "load" / "loadgen.py"


def niced(command, nice):
    """The command run at the given niceness (0: as is)."""
    return ["nice", "-n", str(nice), *command] if nice else command


def run_playbook(playbook, *args, inventory=None, vault_password=VAULT_PASSWORD, nice=0):
    """Run a playbook of this repository against the scenario's hosts; output merged."""
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(vault_password), ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run(
        niced(["ansible-playbook", "-i", inventory or INVENTORY, playbook, *args], nice),
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    result.output = result.stdout + result.stderr
    return result


def vault_values(vault_file, vault_password=VAULT_PASSWORD):
    """The vault_* variables of a Vault-encrypted vars file, decrypted with ansible-vault."""
    out = subprocess.run(
        ["ansible-vault", "view", "--vault-password-file", str(vault_password), str(vault_file)],
        capture_output=True, text=True, check=True,
    ).stdout
    return {k: v for k, v in yaml.safe_load(out).items() if k.startswith("vault_")}


def recap(output, host):
    """The PLAY RECAP counters of one host, e.g. {'ok': 20, 'changed': 0, ...}."""
    for line in reversed(output.splitlines()):
        if line.startswith(host + " ") and "ok=" in line:
            return {k: int(v) for k, v in (p.split("=") for p in line.split()[2:])}
    raise AssertionError("no PLAY RECAP line for " + host + " in:\n" + output[-3000:])


def api(host, method, path, body=None, port=80):
    """Call the stack's API through Nginx from inside a test host: (status, parsed JSON)."""
    cmd = "curl -sS -o /tmp/api-body -w '%%{http_code}' -X %s -H 'Content-Type: application/json'"
    args = [method]
    if body is not None:
        cmd += " -d %s"
        args.append(json.dumps(body))
    cmd += " %s"
    args.append("http://127.0.0.1:%d%s" % (port, path))
    status = int(host.check_output(cmd, *args))
    return status, json.loads(host.file("/tmp/api-body").content_string or "null")


class Load:
    """The bounded load generator in the background, from this machine to a 127.0.0.1 URL."""

    def __init__(self, url, rate=40, max_seconds=600, nice=0):
        self.dir = Path(tempfile.mkdtemp(prefix="selfhost-load-"))
        self.stop_file = self.dir / "stop"
        self.output = self.dir / "load.json"
        self.process = subprocess.Popen(
            niced([sys.executable, str(LOADGEN), url, "--rate", str(rate), "--duration", str(max_seconds),
                   "--stop-file", str(self.stop_file), "--output", str(self.output)], nice),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)  # a few seconds of steady state before the change

    def stop(self):
        time.sleep(3)  # and after it
        self.stop_file.touch()
        self.process.wait(timeout=60)
        return json.loads(self.output.read_text())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.stop_file.touch()
            self.process.wait(timeout=60)
