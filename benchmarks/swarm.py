#!/usr/bin/env python3
"""The demo on a three-node Docker Swarm (app_engine swarm): failed requests and latency through
the edge Nginx in steady state, during a rolling update v1 -> v2 (playbooks/deploy.yml; Swarm
replaces each backend and frontend task start-first), and with a worker killed (docker kill of
its whole test host): how long until Swarm ran the lost tasks on the other worker. Set beside
the same change on the Compose fleet (benchmarks/results/lb.json, written by benchmarks/lb.py).

Its own swarm (one manager, two workers, the swarm scenario's group_vars); a bounded load
generator on this machine against the manager's port 80, published on 127.0.0.1. Run after
scripts/setup.sh, inside the venv:
    python benchmarks/swarm.py [--rate 40] [--controller-nice 10] [--client-nice -5]
The controller, the load generator and the three test hosts share this machine's CPUs.
Prints the figures and writes benchmarks/results/swarm.json.
The two paths differ besides the engine: the fleet's requests go over HTTPS through HAProxy to two
app hosts, and its update.yml also runs the v2 migration; here plain HTTP to the edge Nginx, no
migrations (not on a swarm yet), GET /api/version.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchlib import ROOT, remove_host, show, start_host, summary

sys.path.insert(0, str(ROOT / "molecule" / "shared"))
from testlib import Load, run_playbook, window  # noqa: E402

MANAGER, WORKER1, WORKER2 = (f"selfhost-bench-swarm-{n}" for n in ("manager", "worker1", "worker2"))
PORT = 18491
URL = f"http://127.0.0.1:{PORT}/api/version"
OPTIONS = {"controller_nice": 0, "client_nice": 0}
SCENARIO = ROOT / "molecule" / "swarm" / "molecule.yml"


def swarm_inventory():
    """The swarm scenario's group_vars and worker1's labels, for this benchmark's hosts."""
    inventory = yaml.safe_load(SCENARIO.read_text())["provisioner"]["inventory"]
    host = {"ansible_connection": "community.docker.docker"}
    doc = {"all": {"vars": inventory["group_vars"]["all"], "children": {
        "swarm_managers": {"hosts": {MANAGER: host}},
        "swarm_workers": {"hosts": {WORKER1: dict(host, **inventory["host_vars"]["selfhost-swarm-worker1"]),
                                    WORKER2: host}}}}}
    path = Path(tempfile.mkdtemp(prefix="bench-swarm-")) / "hosts.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def load(rate, **kwargs):
    return Load(URL, rate=rate, nice=OPTIONS["client_nice"], **kwargs)


def playbook(inventory, *args):
    return run_playbook("playbooks/deploy.yml", *args, inventory=inventory, nice=OPTIONS["controller_nice"])


def manager_sh(command):
    return subprocess.run(["docker", "exec", MANAGER, "sh", "-c", command], text=True, capture_output=True,
                          check=False).stdout


def backend_nodes():
    """Nodes of the backend's running tasks."""
    out = manager_sh("docker service ps demo_backend --filter desired-state=running --format '{{.Node}} {{.CurrentState}}'")
    return sorted(line.split()[0] for line in out.splitlines() if " Running " in line)


def steady_state(rate, seconds=30):
    with load(rate, settle=0) as run:
        time.sleep(seconds)
        return run.stop()


def rolling_update(inventory, rate, version):
    with load(rate) as run:
        start = time.monotonic()
        result = playbook(inventory, "-e", f"app_version={version}")
        elapsed = time.monotonic() - start
        figures = run.stop()
    if result.returncode:
        sys.exit(result.output[-3000:])
    return {**summary(figures), "action_s": round(elapsed, 1)}


def kill_worker(rate, victim, survivor, limit=180):
    """Kill the test host that runs a backend task; until both backend tasks run on the survivor."""
    with load(rate, timeline=True, settle=0) as run:
        time.sleep(10)
        killed = time.time()
        subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
        recovered = None
        while time.time() < killed + limit:
            if backend_nodes() == [survivor, survivor]:
                recovered = time.time()
                break
            time.sleep(1)
        time.sleep(10)
        figures = run.stop()
    return {**summary(figures),
            "tasks_back_after_s": round(recovered - killed, 1) if recovered else None,
            "until_tasks_back": window(figures, killed, recovered),
            "after_tasks_back": window(figures, recovered, None) if recovered else None,
            "first_failures": figures.get("first_failures")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40, help="requests per second")
    parser.add_argument("--controller-nice", type=int, default=0, help="niceness of ansible-playbook")
    parser.add_argument("--client-nice", type=int, default=0, help="niceness of the load generator")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "swarm.json"))
    args = parser.parse_args()
    OPTIONS.update(controller_nice=args.controller_nice, client_nice=args.client_nice)
    image = os.environ.get("SELFHOST_DOCKER_HOST_IMAGE") or sys.exit("source .harness.env first")

    inventory = swarm_inventory()
    results = {"rate": args.rate, "hosts": "swarm: 1 manager + 2 workers, systemd test hosts on one machine", **OPTIONS,
               "load_before": os.getloadavg()}
    try:
        start_host(MANAGER, image, "--publish", f"127.0.0.1:{PORT}:80")
        for host in (WORKER1, WORKER2):
            start_host(host, image)
        started = time.monotonic()
        deployed = playbook(inventory)
        if deployed.returncode:
            sys.exit(deployed.output[-3000:])
        results["deploy_s"] = round(time.monotonic() - started)
        results["steady"] = summary(steady_state(args.rate))
        show("steady state (30 s)", results["steady"])
        results["rolling_update"] = rolling_update(inventory, args.rate, "v2")
        show("rolling update v1 -> v2", results["rolling_update"], f"  ({results['rolling_update']['action_s']:.0f} s)")
        nodes = backend_nodes()
        victim = WORKER2 if WORKER2 in nodes else WORKER1
        results["killed_worker"] = kill_worker(args.rate, victim, WORKER1 if victim == WORKER2 else WORKER2)
        show("worker killed", results["killed_worker"],
             f"  (backend back to 2 tasks after {results['killed_worker']['tasks_back_after_s']} s)")
    finally:
        results["load_after"] = os.getloadavg()
        for host in (MANAGER, WORKER1, WORKER2):
            remove_host(host)

    fleet_file = ROOT / "benchmarks" / "results" / "lb.json"
    if fleet_file.exists():
        fleet = json.loads(fleet_file.read_text())["rolling_update"]
        results["compose_fleet_rolling_update"] = dict(fleet, source=str(fleet_file.relative_to(ROOT)))
        show("compose fleet rolling update (lb.json)", fleet, f"  ({fleet['action_s']:.0f} s)")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"load average before / after: {results['load_before']} / {results['load_after']}")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
