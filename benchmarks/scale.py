#!/usr/bin/env python3
"""The cost of a run against the size of the stack: a no-change deploy.yml and a one-service
update.yml for stacks of N routed services (N = 3, 10, 20 by default), on one test host with
Docker already installed ($SELFHOST_DOCKER_HOST_IMAGE). The stack is the demo's: services s1..sN
all on the demo frontend image, each with its own route /s<k>/, plus the demo backend (/api/),
PostgreSQL, Redis and the edge Nginx; small memory limits so 20 fit. Sizes are deployed in
ascending order on the same host (each first deploy at a size is recorded too). The update
changes s1's image only (-e app_frontend_image=...:v2, then back). For every playbook run: wall
time, round trips to the host (counted exactly: benchlib.RoundTrips), CPU seconds of the
controller side and the switch's `timings`; then per extra service (between the smallest and the
largest size) the seconds and round trips each added service costs.

Run after scripts/setup.sh, inside the venv (heavy: take the machine's lock):
    flock /tmp/selfhost-heavy.lock python benchmarks/scale.py [--sizes 3,10,20] [--runs 3]
Prints the figures with their targets and writes benchmarks/results/scale.json.
Aims (issue 23): <= 0.3 s per added service, and the same number of round trips at every size.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchlib import (ROOT, PlaybookFailed, Runner, children_cpu_s, loadavg, median, one_host_inventory, public,
                      remove_host, remove_hosts_on_signal, start_host)

HOST = "selfhost-bench-scale"
LIMITS = {"memory": "32M", "cpus": "0.25", "pids": 64}
TARGETS = {"per_extra_service_s": 0.3, "per_extra_service_round_trips": 0}


def services(size):
    """app_services of a stack of `size` routed frontend services plus the demo backend; s1's image
    is app_frontend_image (what the update changes), the others' the demo frontend's v1."""
    defaults = yaml.safe_load((ROOT / "roles" / "app" / "defaults" / "main.yml").read_text())
    model = {}
    for k in range(1, size + 1):
        model[f"s{k}"] = {
            "image": "{{ app_frontend_image }}" if k == 1 else "{{ app_registry }}/selfhost/demo-frontend:v1",
            "port": 8080, "routes": [f"/s{k}/"], "healthcheck": {"http": "/healthz"}, "limits": dict(LIMITS)}
    model["backend"] = defaults["app_services"]["backend"]  # the demo's backend, as the role's default has it
    return model


def frontend(tag):
    return f"{os.environ.get('SELFHOST_REGISTRY', 'selfhost-registry:5000')}/selfhost/demo-frontend:{tag}"


def host_sh(script):
    return subprocess.run(["docker", "exec", HOST, "sh", "-c", script], capture_output=True, text=True,
                          check=False, timeout=120).stdout.strip()


def per_extra(sizes, figures, key):
    lo, hi = min(sizes), max(sizes)
    a, b = figures[lo][key], figures[hi][key]
    if a is None or b is None or hi == lo:
        return None
    return round((b - a) / (hi - lo), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,10,20", help="numbers of routed services, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="no-change deploys and update pairs per size")
    parser.add_argument("--controller-nice", type=int, default=0, help="niceness of ansible-playbook")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    if not sizes or sizes[0] < 1 or sizes[-1] > 30:
        sys.exit("sizes between 1 and 30")
    image = os.environ.get("SELFHOST_DOCKER_HOST_IMAGE") or sys.exit("source .harness.env first")

    remove_hosts_on_signal()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    inventory = one_host_inventory(HOST, "bench-scale-")
    host_vars = inventory.parent / "host_vars"
    host_vars.mkdir()
    runner = Runner(inventory, HOST, work, nice=args.controller_nice)
    cpu_start = children_cpu_s()
    results = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg()},
        "options": {"sizes": sizes, "runs": args.runs, "controller_nice": args.controller_nice, "pipelining": True},
        "stack": "N services s1..sN on the demo frontend image (route /s<k>/, limits %s) + the demo backend + "
                 "nginx, postgres, redis; the update changes s1's image only" % LIMITS,
        "round_trips_counted": "docker exec/cp calls naming the test host, logged by a docker shim first in PATH "
                               "(community.docker.docker runs the docker CLI once per round trip)",
        "targets": TARGETS,
        "sizes": {},
    }
    summary = {}
    failure = None
    try:
        start_host(HOST, image)
        for size in sizes:
            (host_vars / f"{HOST}.yml").write_text(yaml.safe_dump({"app_services": services(size)}, sort_keys=False))
            entry = results["sizes"][str(size)] = {}
            entry["first_deploy"] = public(runner.run("playbooks/deploy.yml"))
            entry["containers"] = len(host_sh("docker ps -q").split())
            entry["routes_answer"] = {p: host_sh(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1{p}")
                                      for p in ("/s1/", f"/s{size}/", "/api/health")}
            entry["no_change"] = [public(runner.run("playbooks/deploy.yml")) for _ in range(args.runs)]
            entry["updates"] = []
            for _ in range(args.runs):
                for tag in ("v2", "v1"):
                    run = public(runner.run("playbooks/update.yml", "-e", f"app_frontend_image={frontend(tag)}"))
                    run["to"] = tag
                    entry["updates"].append(run)
            nc, up = entry["no_change"], entry["updates"]
            summary[size] = {
                "no_change_s": median([r["wall_s"] for r in nc]),
                "no_change_round_trips": median([r["round_trips"] for r in nc]),
                "no_change_cpu_s": median([r["cpu_s"] for r in nc]),
                "no_change_changed": [(r["recap"] or {}).get("changed") for r in nc],
                "update_s": median([r["wall_s"] for r in up]),
                "update_round_trips": median([r["round_trips"] for r in up]),
                "update_cpu_s": median([r["cpu_s"] for r in up]),
                "update_switch_s": median([r["switch"][-1]["seconds"] if r["switch"] else None for r in up]),
            }
            entry["summary"] = summary[size]
            print(f"{size:>3} services ({entry['containers']} containers): no-change deploy {summary[size]['no_change_s']:6.1f} s,"
                  f" {summary[size]['no_change_round_trips']:g} round trips; one-service update {summary[size]['update_s']:6.1f} s,"
                  f" {summary[size]['update_round_trips']:g} round trips (switch {summary[size]['update_switch_s']} s)"
                  f"  load {loadavg()[0]}")
            if any(c != 0 for c in summary[size]["no_change_changed"]):
                print(f"WARNING: the no-change deploy at {size} changed something: {summary[size]['no_change_changed']}")
    except PlaybookFailed as exc:
        failure = exc
        results["failure"] = {**public(exc.figures), "output_tail": exc.figures["output"][-6000:]}
    finally:
        remove_host(HOST)
        results["machine"]["loadavg_after"] = loadavg()
        results["cpu_s_total"] = round(children_cpu_s() - cpu_start, 1)

    done = [s for s in sizes if s in summary]
    if len(done) >= 2:
        extra = {key + "_per_extra_service": per_extra(done, summary, key)
                 for key in ("no_change_s", "no_change_round_trips", "update_s", "update_round_trips")}
        extra["between"] = [min(done), max(done)]
        results["per_extra_service"] = extra
        print(f"per extra service ({min(done)} -> {max(done)}): no-change {extra['no_change_s_per_extra_service']} s and "
              f"{extra['no_change_round_trips_per_extra_service']} round trips; update {extra['update_s_per_extra_service']} s"
              f" and {extra['update_round_trips_per_extra_service']} round trips (aim <= {TARGETS['per_extra_service_s']} s,"
              f" {TARGETS['per_extra_service_round_trips']} round trips)")
    print(f"machine: {os.cpu_count()} cpus, load average before {results['machine']['loadavg_before']},"
          f" after {results['machine']['loadavg_after']}; cpu {results['cpu_s_total']} s")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.output}")
    if failure:
        sys.exit(str(failure))


if __name__ == "__main__":
    main()
