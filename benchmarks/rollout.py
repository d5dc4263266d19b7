#!/usr/bin/env python3
"""Failed requests and p99 latency during (a) our rolling update, (b) a plain
`docker compose up -d` with the new image on the same stack, (c) our automatic rollback of a
broken version; plus the rollback time (gate failure to the previous release healthy again).

One all-in-one test host; a bounded load generator on this machine against the host's
published port on 127.0.0.1. Run after scripts/setup.sh, inside the venv:
    python benchmarks/rollout.py [--rate 50] [--controller-nice 10] [--client-nice -5]
The controller (ansible-playbook), the load generator and the test host share this machine's
CPUs, where in production they are three machines; the two options lower the controller's and
raise the client's CPU priority so that the latency measured is the host's (0 and 0: no change).
Prints the figures and writes benchmarks/results/rollout.json.
Targets (issue 7): 0 failed requests in (a) and (c), p99 within 2x of steady state,
rollback within 30 s per host.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, one_host_inventory, remove_host, start_host

sys.path.insert(0, str(ROOT / "molecule" / "shared"))
from testlib import Load, run_playbook  # noqa: E402

HOST = "selfhost-bench-rollout"
PORT = 18090
URL = f"http://127.0.0.1:{PORT}/api/items"


def sh(*cmd):
    return subprocess.run(cmd, check=True, text=True, capture_output=True).stdout


def host_sh(script):
    return sh("docker", "exec", HOST, "sh", "-c", script)


OPTIONS = {"controller_nice": 0, "client_nice": 0}


def playbook(inventory, name, *args):
    return run_playbook(name, *args, inventory=inventory, nice=OPTIONS["controller_nice"])


def measure(label, action, rate):
    with Load(URL, rate=rate, nice=OPTIONS["client_nice"]) as load:
        start = time.monotonic()
        outcome = action()
        elapsed = time.monotonic() - start
        figures = load.stop()
    figures["action_s"] = round(elapsed, 1)
    print(f"{label:<34} failed {figures['failed']:>4}/{figures['requests']:<5} p50 {figures['p50_ms']:>7} ms"
          f"  p99 {figures['p99_ms']:>7} ms  ({elapsed:.0f} s)")
    return figures, outcome


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50, help="requests per second")
    parser.add_argument("--controller-nice", type=int, default=0, help="niceness of ansible-playbook")
    parser.add_argument("--client-nice", type=int, default=0, help="niceness of the load generator")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "rollout.json"))
    args = parser.parse_args()
    OPTIONS.update(controller_nice=args.controller_nice, client_nice=args.client_nice)
    image = os.environ.get("SELFHOST_DOCKER_HOST_IMAGE") or sys.exit("source .harness.env first")

    inv = str(one_host_inventory(HOST, "bench-rollout-"))
    start_host(HOST, image, "--publish", f"127.0.0.1:{PORT}:80")
    results = {"rate": args.rate, "host": "one all-in-one test host (systemd container, its own Docker engine)", **OPTIONS}
    try:
        deployed = playbook(inv, "playbooks/deploy.yml")
        if deployed.returncode:
            sys.exit(deployed.output[-3000:])
        results["steady"], _ = measure("steady state (30 s)", lambda: time.sleep(30), args.rate)
        results["a_our_update"], upd = measure("(a) our update v1 -> v2", lambda: playbook(inv, "playbooks/update.yml", "-e", "app_version=v2"), args.rate)
        if upd.returncode:
            sys.exit(upd.output[-3000:])

        # (b) What a plain Compose deploy does on the same stack: new image, `up -d`, and the
        # Nginx reload its upstreams need afterwards.
        def plain_up():
            host_sh("cd /opt/demo && sed -i 's/:v2$/:v1/' .env && docker compose up -d --wait"
                    " && docker compose exec -T nginx nginx -s reload")
        results["b_plain_compose_up"], _ = measure("(b) plain docker compose up -d", plain_up, args.rate)
        # Back to a state our tooling knows (v2, recorded) before (c).
        playbook(inv, "playbooks/deploy.yml", "-e", "app_version=v2")

        results["c_our_automatic_rollback"], bad = measure(
            "(c) our update to broken (reverted)", lambda: playbook(inv, "playbooks/update.yml", "-e", "app_version=broken",
                                                                   "-e", "app_deploy_timeout=30"), args.rate)
        audit = [json.loads(line) for line in host_sh("cat /opt/demo/audit.log").splitlines()]
        revert = next(e for e in reversed(audit) if e["action"] == "revert")
        failed = next(e for e in reversed(audit) if e.get("phase") == "end" and e.get("result", "").startswith("reverted"))
        parse = lambda t: datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        results["rollback_s"] = (parse(failed["time"]) - parse(revert["time"])).total_seconds()
        results["broken_update_failed_as_expected"] = bad.returncode != 0
    finally:
        remove_host(HOST)

    steady = results["steady"]["p99_ms"]
    results["p99_over_steady"] = {k: round(results[k]["p99_ms"] / steady, 2)
                                  for k in ("a_our_update", "b_plain_compose_up", "c_our_automatic_rollback")}
    results["targets"] = {"failed_a_and_c": 0, "p99_over_steady": 2.0, "rollback_s": 30}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"rollback time (gate failure -> previous release healthy): {results['rollback_s']:.0f} s (target <= 30 s)")
    print(f"p99 / steady p99: {results['p99_over_steady']} (target <= 2)")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
