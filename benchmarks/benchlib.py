"""What the benchmarks share: test hosts of their own, a one-host inventory for one with the
default scenario's group_vars (demo stack, local registry, its Vault file), and a fleet
inventory with the fleet scenario's (the same plus the load balancer's TLS from Pebble); a
playbook run measured (wall time, round trips to the host, CPU seconds, the switch's timings)
and a change measured under the bounded load generator."""

import json
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NOOP_TASKS = 40


def floor_play(path):
    """The floor a run of ours is set against: fact gathering and NOOP_TASKS no-op tasks on
    every host of the inventory, written to path."""
    tasks = "".join(
        f"    - name: No-op {i}\n      ansible.builtin.file:\n        path: /tmp\n        state: directory\n"
        for i in range(NOOP_TASKS))
    path.write_text(f"- name: Floor\n  hosts: all\n  gather_facts: true\n  tasks:\n{tasks}")
    return path


GROUP_VARS = ROOT / "molecule" / "default" / "inventory" / "group_vars"
FLEET_GROUP_VARS = ROOT / "molecule" / "fleet" / "inventory" / "group_vars"
VAULT_PASSWORD = ROOT / "molecule" / "default" / "vault-password"

sys.path.insert(0, str(ROOT / "molecule" / "shared"))
from testlib import Load, niced, recap, window  # noqa: E402


def one_host_inventory(host, prefix):
    """Write an inventory of `host` (docker connection) into a new temporary directory; its path."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    inventory = work / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    {host}:\n      ansible_connection: community.docker.docker\n")
    (work / "group_vars").symlink_to(GROUP_VARS)
    return inventory


def fleet_inventory(groups, prefix):
    """Write an inventory of `groups` ({group: [host, ...]}, docker connection) with the fleet
    scenario's group_vars into a new temporary directory; its path."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    inventory = work / "hosts.yml"
    lines = ["all:", "  children:"]
    for group, hosts in groups.items():
        lines += [f"    {group}:", "      hosts:"]
        lines += [f"        {h}:\n          ansible_connection: community.docker.docker" for h in hosts]
    inventory.write_text("\n".join(lines) + "\n")
    (work / "group_vars").symlink_to(FLEET_GROUP_VARS)
    return inventory


def point_name_at(name, host, network):
    """Make Pebble's DNS (pebble-challtestsrv) answer `name` with `host`'s address on `network`."""
    address = subprocess.run(
        ["docker", "inspect", "--format", '{{(index .NetworkSettings.Networks "%s").IPAddress}}' % network, host],
        check=True, text=True, capture_output=True).stdout.strip()
    for path, body in (("clear-a", {"host": name}), ("add-a", {"host": name, "addresses": [address]})):
        subprocess.run(["docker", "exec", "selfhost-pebble", "curl", "-fsS", "--data", json.dumps(body),
                        "http://127.0.0.1:8055/" + path], check=True, capture_output=True)
    return address


def pebble_root(path):
    """Write Pebble's root (which its certificates chain to) to `path`; the path."""
    root = subprocess.run(["docker", "exec", "selfhost-pebble", "curl", "-fsS", "--cacert", "/etc/pebble/tls/ca.pem",
                           "https://127.0.0.1:15000/roots/0"], check=True, text=True, capture_output=True).stdout
    Path(path).write_text(root)
    return Path(path)


def start_host(host, image, *docker_args):
    """Boot a systemd test host from `image` (an earlier one of that name is removed first)."""
    remove_host(host)
    subprocess.run([str(ROOT / "tests/harness/testhost.sh"), host, image, "--label", "selfhost.test=1", *docker_args],
                   check=True, text=True, capture_output=True)


def remove_host(host):
    subprocess.run(["docker", "rm", "-fv", host], capture_output=True, check=False)


def summary(figures):
    """The headline figures of a load run."""
    keys = ("requests", "failed", "p50_ms", "p99_ms", "max_ms")
    return {k: figures[k] for k in keys if k in figures}


def show(label, figures, extra=""):
    print(f"{label:<40} failed {figures['failed']:>4}/{figures['requests']:<5} p50 {figures['p50_ms']:>7} ms"
          f"  p99 {figures['p99_ms']:>7} ms{extra}")


# -- what a run costs ------------------------------------------------------------------------

def remove_hosts_on_signal():
    """SIGTERM and SIGHUP end the benchmark through its `finally` (which removes its test hosts)."""
    def leave(signum, _frame):
        raise SystemExit("stopped by signal %d" % signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)


def children_cpu_s():
    """CPU seconds (user + system) of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


# Field and record separators of the shim's log (arguments may hold spaces and newlines).
_US, _RS = "\x1f", "\x1e"


class RoundTrips:
    """Counts the round trips of an ansible-playbook run to the test hosts, exactly.

    The test hosts are reached with the community.docker.docker connection, which runs the
    `docker` CLI once per round trip: `docker exec -i HOST /bin/sh -c CMD` to run a command or a
    module (pipelined: the module arrives on stdin, one exec per module), `docker exec ... dd of=`
    to put a file, `docker cp HOST:PATH DIR` (or an exec of `dd if=`) to fetch one. The plugin
    finds `docker` in PATH; a shim directory first in PATH logs each invocation's arguments
    and execs the real CLI. A round trip is an `exec` or `cp` naming the host; anything else the
    run asked of the CLI (`version`, `inspect`, other containers) is kept apart."""

    def __init__(self, workdir):
        real = shutil.which("docker") or sys.exit("no docker CLI in PATH")
        self.bin = Path(workdir) / "docker-shim"
        self.bin.mkdir(parents=True, exist_ok=True)
        shim = self.bin / "docker"
        # One printf per call: the arguments joined by the field separator, then a record separator.
        shim.write_text("#!/bin/sh\n# Logs this docker call for benchmarks/benchlib.py (RoundTrips), then runs it.\n"
                        f"IFS='{_US}'\nprintf '%s{_RS}' \"$*\" >>\"$SELFHOST_DOCKER_LOG\"\n"
                        f"exec {shlex.quote(real)} \"$@\"\n")
        shim.chmod(0o755)
        self.runs = 0

    def env(self, env):
        """`env` for one run, with a log of its own; returns (env, log path)."""
        self.runs += 1
        log = self.bin.parent / f"docker-calls-{self.runs}.log"
        log.write_text("")
        return dict(env, PATH=f"{self.bin}:{env.get('PATH', '')}", SELFHOST_DOCKER_LOG=str(log)), log

    @staticmethod
    def kind(command):
        """What a `docker exec` ran on the host: module, put, fetch, discovery or shell."""
        if "dd of=" in command:
            return "put"
        if "dd if=" in command:
            return "fetch"
        if "echo FOUND" in command or "echo PLATFORM" in command:
            return "interpreter_discovery"
        if "python" in command:
            return "module"
        return "shell"

    @classmethod
    def count(cls, log, host):
        """{'round_trips': n, 'kinds': {...}, 'other_docker_calls': [...]} of one run's log."""
        kinds, other = {}, []
        for record in Path(log).read_text().split(_RS):
            if not record:
                continue
            argv = record.split(_US)
            sub = argv[0]
            if sub == "exec" and "-i" in argv and argv.index("-i") + 1 < len(argv) and argv[argv.index("-i") + 1] == host:
                kind = cls.kind(argv[-1])
            elif sub == "cp" and len(argv) > 1 and argv[1].startswith(host + ":"):
                kind = "fetch"
            else:
                other.append(" ".join(argv)[:200])
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
        return {"round_trips": sum(kinds.values()), "kinds": kinds, "other_docker_calls": other}


def switch_timings(output):
    """The `timings` of every app_switch result a -v run printed: [{'action', 'timings', ...}]."""
    found = []
    for line in output.splitlines():
        if "=> {" not in line or '"timings"' not in line:
            continue
        try:
            result = json.loads(line[line.index("=> {") + 3:])
        except ValueError:
            continue
        if isinstance(result, dict) and isinstance(result.get("timings"), dict) and "action" in result:
            # Each step's seconds since the switch started: the last is the switch's whole time.
            found.append({"action": result["action"], "changed": result.get("changed"),
                          "seconds": max(result["timings"].values(), default=None),
                          "timings": dict(sorted(result["timings"].items(), key=lambda kv: kv[1])),
                          "changes": len(result.get("changes") or [])})
    return found


class Runner:
    """Runs this repository's playbooks against one test host as a user would (with -v, so the
    switch's result, its `timings` included, is in the output) and measures each run."""

    def __init__(self, inventory, host, workdir, nice=0):
        self.inventory, self.host, self.nice = str(inventory), host, nice
        self.trips = RoundTrips(workdir)

    def run(self, playbook, *args, timeout=1800, check=True):
        """One measured run: a dict of figures; the output is under the key `output` (not for JSON)."""
        # The default callback with one-line JSON results, whatever the caller's settings: switch_timings reads them.
        env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(VAULT_PASSWORD), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
                   ANSIBLE_CALLBACK_FORMAT_PRETTY="false")
        env, log = self.trips.env(env)
        cpu, load_before = children_cpu_s(), loadavg()[0]
        started, start = time.time(), time.monotonic()
        proc = subprocess.run(niced(["ansible-playbook", "-v", "-i", self.inventory, str(playbook), *args], self.nice),
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        wall = time.monotonic() - start
        output = proc.stdout + proc.stderr
        try:
            counters = recap(output, self.host)
        except AssertionError:
            counters = None
        figures = {"playbook": str(playbook), "args": list(args), "rc": proc.returncode, "wall_s": round(wall, 2),
                   "started": round(started, 3), "ended": round(started + wall, 3),
                   **RoundTrips.count(log, self.host), "cpu_s": round(children_cpu_s() - cpu, 2),
                   "load1_before": load_before, "load1_after": loadavg()[0], "recap": counters,
                   "switch": switch_timings(output), "output": output}
        if check and proc.returncode != 0:
            raise PlaybookFailed(figures)
        if check and figures["round_trips"] == 0:
            raise PlaybookFailed(figures, "no round trip was counted: the docker shim was not used")
        return figures


class PlaybookFailed(Exception):
    def __init__(self, figures, why=None):
        self.figures = figures
        super().__init__(f"{figures['playbook']} {' '.join(figures['args'])} failed (rc {figures['rc']})"
                         f"{': ' + why if why else ''}:\n{figures['output'][-6000:]}")


def public(figures):
    """A run's figures without its output."""
    return {k: v for k, v in figures.items() if k != "output"}


def steady_load(url, rate, seconds, nice=0):
    """`seconds` of the bounded load alone: its figures."""
    with Load(url, rate=rate, nice=nice, settle=0, max_seconds=seconds + 60) as load:
        time.sleep(seconds)
        return load.stop()


def under_load(url, rate, action, nice=0, settle=2):
    """Runs `action()` (a playbook run's figures) under the bounded load generator, which starts
    `settle` seconds before and stops `settle` seconds after. The load figures are those of the
    requests sent during the run (`during`); `failed` also counts the `settle` seconds after it,
    when the old containers stop."""
    with Load(url, rate=rate, nice=nice, settle=settle, timeline=True, max_seconds=900) as load:
        try:
            run = action()
        finally:
            figures = load.stop()
    during = window(figures, run["started"], run["ended"])
    after = window(figures, run["started"])
    run["load"] = {"rate": rate, "url": url, **during, "failed": after["failed"],
                   "failed_during": during["failed"], "requests_after_start": after["requests"],
                   "failure_reasons": figures.get("failure_reasons", [])}
    return run
