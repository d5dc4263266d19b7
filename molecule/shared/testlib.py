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


def api(host, method, path, body=None, port=80, base=None, curl_args=""):
    """Call the stack's API through Nginx from inside a test host: (status, parsed JSON).

    `base` replaces http://127.0.0.1:<port> (e.g. an HTTPS URL, with `curl_args` such as
    --cacert and --resolve)."""
    cmd = "curl -sS -o /tmp/api-body -w '%%{http_code}' -X %s -H 'Content-Type: application/json'"
    args = [method]
    if body is not None:
        cmd += " -d %s"
        args.append(json.dumps(body))
    cmd += " " + curl_args + " %s"
    args.append((base or "http://127.0.0.1:%d" % port) + path)
    status = int(host.check_output(cmd, *args))
    return status, json.loads(host.file("/tmp/api-body").content_string or "null")


class Load:
    """The bounded load generator in the background, from this machine to a 127.0.0.1 URL.

    HTTPS: `cacert` (a PEM file) verifies the server, `resolve` ("HOST:PORT:127.0.0.1") sends the
    URL's name to a local port. `timeline` keeps every request in the figures (see `window`)."""

    def __init__(self, url, rate=40, max_seconds=600, nice=0, cacert=None, resolve=None, timeline=False,
                 settle=2):
        self.dir = Path(tempfile.mkdtemp(prefix="selfhost-load-"))
        self.stop_file = self.dir / "stop"
        self.output = self.dir / "load.json"
        self.settle = settle
        extra = (["--cacert", str(cacert)] if cacert else []) + (["--resolve", resolve] if resolve else []) \
            + (["--timeline"] if timeline else [])
        self.process = subprocess.Popen(
            niced([sys.executable, str(LOADGEN), url, "--rate", str(rate), "--duration", str(max_seconds),
                   "--stop-file", str(self.stop_file), "--output", str(self.output), *extra], nice),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(settle)  # a few seconds of steady state before the change

    def stop(self):
        time.sleep(self.settle)  # and after it
        self.stop_file.touch()
        self.process.wait(timeout=60)
        return json.loads(self.output.read_text())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.stop_file.touch()
            self.process.wait(timeout=60)


def window(figures, start=None, end=None):
    """Requests of a load run (Load(timeline=True)) sent between two wall-clock times (time.time()):
    {'requests', 'failed', 'p50_ms', 'p99_ms', 'max_ms'}."""
    epoch = figures["epoch"]
    rows = [r for r in figures["timeline"]
            if (start is None or epoch + r[0] >= start) and (end is None or epoch + r[0] < end)]
    ordered = sorted(r[1] for r in rows)

    def pct(q):
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, max(0, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))]
    return {"requests": len(rows), "failed": sum(1 for r in rows if not r[2]), "p50_ms": pct(50), "p99_ms": pct(99),
            "max_ms": ordered[-1] if ordered else None}


class LbWatch:
    """Watches one app host from inside the load balancer's test host, every 0.1 s for at most
    `seconds` (two bounded loops in the background there): HAProxy's view of it (runtime API
    `show servers state`) and whether it answers `health_url` itself. Times are wall-clock
    (the test hosts share this machine's clock)."""

    SOCKET = "/run/haproxy/admin.sock"

    def __init__(self, lb_container, server, health_url, backend="app_hosts", seconds=300):
        self.lb, self.server = lb_container, server
        self.dir = "/tmp/lbwatch-" + server
        states = (f'echo "show servers state {backend}" | socat -t 2 stdio unix-connect:{self.SOCKET}'
                  f' | awk \'$4 == "{server}" {{print $6, $7}}\'')
        loop = ('end=$(($(date +%s) + {s})); while [ "$(date +%s)" -lt "$end" ] && [ ! -e {d}/stop ]; do '
                '{body}; sleep 0.1; done >{d}/{name}.log 2>/dev/null')
        self._sh(f"rm -rf {self.dir} && mkdir -p {self.dir}")
        for name, body in (("states", f'echo "$(date +%s.%N) $({states})"'),
                           ("health", f'if curl -fsS -o /dev/null -m 0.5 {health_url}; then h=1; else h=0; fi; '
                                      'echo "$(date +%s.%N) $h"')):
            subprocess.run(["docker", "exec", "-d", self.lb, "sh", "-c",
                            loop.format(s=int(seconds), d=self.dir, body=body, name=name)], check=True, timeout=30)

    def _sh(self, script):
        return subprocess.run(["docker", "exec", self.lb, "sh", "-c", script], capture_output=True, text=True,
                              check=True, timeout=60).stdout

    def stop(self):
        self._sh(f"touch {self.dir}/stop; sleep 0.5")

    def states(self):
        """[(time, health 'up'/'down'/..., in rotation)]: in rotation = up and no maintenance or drain."""
        out = []
        for line in self._sh(f"cat {self.dir}/states.log").splitlines():
            parts = line.split()
            if len(parts) == 3:
                t, op, admin = float(parts[0]), int(parts[1]), int(parts[2])
                out.append((t, op, op == 2 and admin == 0))
        return out

    def health(self):
        return [(float(t), h == "1") for t, h in (line.split() for line in
                                                    self._sh(f"cat {self.dir}/health.log").splitlines()
                                                    if len(line.split()) == 2)]

    def first(self, rows, after, predicate):
        return next((row[0] for row in rows if row[0] >= after and predicate(row)), None)

    def ejected_at(self, after):
        """When HAProxy first had the server out of rotation after `after`."""
        return self.first(self.states(), after, lambda r: not r[2])

    def healthy_at(self, after):
        """When the server first answered its health check itself after `after`."""
        return self.first(self.health(), after, lambda r: r[1])

    def readmitted_at(self, after):
        """When HAProxy first had the server back in rotation after `after`."""
        return self.first(self.states(), after, lambda r: r[2])
