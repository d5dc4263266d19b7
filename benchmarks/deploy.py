#!/usr/bin/env python3
"""What a run costs against what its change costs, on one fresh test host, in one run:
(1) a cold deploy (bare Debian 13 from $SELFHOST_BASE_IMAGE to a healthy stack, Docker install
included, images from the local registry); (2) a no-change deploy.yml against the floor play
(fact gathering + 40 no-op `file` tasks on the same host and connection); (3) a one-service
image change, update.yml with only the frontend image changed (v2, then back to v1), under the
bounded load generator through the host's published port, beside the steady state measured
just before with the same load; (4) rollback.yml under the same load (twice: to the release
before, and to the one before that). For every playbook run: wall time, round trips to the
host (counted exactly: benchlib.RoundTrips), CPU seconds of the controller side (getrusage of
children) and the `timings` the switch module returned.

Run after scripts/setup.sh, inside the venv (heavy: take the machine's lock):
    flock /tmp/selfhost-heavy.lock python benchmarks/deploy.py [--runs 3] [--rate 40]
        [--controller-nice 10] [--client-nice -5]
Prints the figures with their targets and writes benchmarks/results/deploy.json.
Targets (issue 23): cold deploy <= 60 s; no-change deploy <= 1.2 x floor; one-service update and
rollback each <= 8 s wall, 0 failed requests, p99 <= 2 x steady.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (NOOP_TASKS, ROOT, PlaybookFailed, Runner, children_cpu_s, floor_play, loadavg, median,
                      one_host_inventory, public, remove_host, remove_hosts_on_signal, start_host, steady_load, under_load)

HOST = "selfhost-bench-deploy"
PORT = 18091
TARGETS = {"cold_deploy_s": 60, "no_change_over_floor": 1.2, "update_wall_s": 8, "update_failed": 0,
           "update_p99_over_steady": 2.0, "rollback_wall_s": 8, "rollback_failed": 0}


def current_release():
    """The id of the release the test host runs now."""
    return subprocess.run(["docker", "exec", HOST, "readlink", "/opt/demo/releases/current"], check=True,
                          capture_output=True, text=True).stdout.strip()


def frontend(tag):
    return f"{os.environ.get('SELFHOST_REGISTRY', 'selfhost-registry:5000')}/selfhost/demo-frontend:{tag}"


def worst(samples, steady_key=True):
    """The worst of several changes under load (each must meet the targets)."""
    out = {"runs": len(samples), "wall_s_median": median([s["wall_s"] for s in samples]),
           "wall_s_max": max(s["wall_s"] for s in samples), "failed": sum(s["load"]["failed"] for s in samples),
           "requests": sum(s["load"]["requests"] for s in samples),
           "p50_ms_max": max(s["load"]["p50_ms"] or 0 for s in samples),
           "p99_ms_max": max(s["load"]["p99_ms"] or 0 for s in samples),
           "round_trips": sorted({s["round_trips"] for s in samples}),
           "cpu_s_median": median([s["cpu_s"] for s in samples])}
    if steady_key:
        out["p99_over_steady_max"] = max(s["p99_over_steady"] or 0 for s in samples)
    return out


def verdict(value, target):
    return "ok" if value is not None and value <= target else "MISSED"


def show_change(label, s):
    load = s["load"]
    print(f"  {label:<30} {s['wall_s']:6.1f} s  failed {load['failed']:>3}/{load['requests']:<4} p50 {load['p50_ms']:>6} ms"
          f"  p99 {load['p99_ms']:>7} ms ({s['p99_over_steady']}x steady)  round trips {s['round_trips']:>3}"
          f"  cpu {s['cpu_s']:5.1f} s  load {s['load1_before']}")
    for switch in s["switch"]:
        print(f"  {'':<30} switch {switch['action']} timings {switch['timings']}")


def report(results):
    t = TARGETS
    cold, nc = results.get("cold_deploy"), results.get("no_change")
    print(f"\nmachine: {results['machine']['cpus']} cpus, load average before {results['machine']['loadavg_before']},"
          f" after {results['machine'].get('loadavg_after')}")
    if cold:
        print(f"cold deploy (bare Debian 13 -> healthy stack) {cold['wall_s']:6.1f} s   (target <= {t['cold_deploy_s']} s:"
              f" {verdict(cold['wall_s'], t['cold_deploy_s'])})  round trips {cold['round_trips']}  cpu {cold['cpu_s']} s")
    if nc:
        print(f"no-change deploy.yml (median of {len(nc['deploy'])})       {nc['deploy_s_median']:6.1f} s"
              f"   round trips {nc['deploy_round_trips']}  cpu {nc['deploy_cpu_s_median']} s")
        print(f"floor play (facts + {NOOP_TASKS} no-op file tasks)      {nc['floor_s_median']:6.1f} s"
              f"   round trips {nc['floor_round_trips']}  cpu {nc['floor_cpu_s_median']} s")
        print(f"no-change / floor                             {nc['over_floor']:6.2f}     (target <= "
              f"{t['no_change_over_floor']}: {verdict(nc['over_floor'], t['no_change_over_floor'])})")
    for r, rnd in enumerate(results.get("rounds", []), 1):
        st = rnd["steady"]
        print(f"round {r}: steady {rnd['steady_seconds']} s at {results['options']['rate']:g} req/s: failed {st['failed']}"
              f"/{st['requests']} p50 {st['p50_ms']} ms p99 {st['p99_ms']} ms")
        for s in rnd.get("updates", []):
            show_change("update.yml frontend -> " + s["to"], s)
        for s in rnd.get("rollbacks", []):
            show_change("rollback.yml", s)
    for key, label in (("update", "one-service update"), ("rollback", "rollback")):
        w = results.get(key)
        if w:
            print(f"{label}: wall max {w['wall_s_max']} s (target <= {t[key + '_wall_s']} s: "
                  f"{verdict(w['wall_s_max'], t[key + '_wall_s'])}), failed {w['failed']} of {w['requests']} "
                  f"(target 0: {verdict(w['failed'], 0)}), p99 max {w['p99_over_steady_max']}x steady"
                  + (f" (target <= {t['update_p99_over_steady']}: {verdict(w['p99_over_steady_max'], t['update_p99_over_steady'])})"
                     if key == "update" else "") + f", round trips {w['round_trips']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3,
                        help="repetitions of the no-change deploy and the floor, and rounds of update + rollback")
    parser.add_argument("--rate", type=float, default=40, help="requests per second of the load")
    parser.add_argument("--path", default="/", help="the URL path the load asks (the frontend's)")
    parser.add_argument("--steady-seconds", type=int, default=20, help="steady state measured before each round")
    parser.add_argument("--controller-nice", type=int, default=0, help="niceness of ansible-playbook")
    parser.add_argument("--client-nice", type=int, default=0, help="niceness of the load generator")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "deploy.json"))
    args = parser.parse_args()
    base_image = os.environ.get("SELFHOST_BASE_IMAGE") or sys.exit("source .harness.env first")
    url = f"http://127.0.0.1:{PORT}{args.path}"

    remove_hosts_on_signal()
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    inventory = one_host_inventory(HOST, "bench-deploy-")
    floor = floor_play(work / "floor.yml")
    runner = Runner(inventory, HOST, work, nice=args.controller_nice)
    cpu_start = children_cpu_s()
    results = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg()},
        "options": {"runs": args.runs, "rate": args.rate, "url": url, "steady_seconds": args.steady_seconds,
                    "controller_nice": args.controller_nice, "client_nice": args.client_nice, "pipelining": True,
                    "verbosity": "-v (the switch's result, its timings, is printed)"},
        "round_trips_counted": "docker exec/cp calls naming the test host, logged by a docker shim first in PATH "
                               "(community.docker.docker runs the docker CLI once per round trip)",
        "cpu_s": "user + system seconds of the run's processes on this machine (getrusage of children: ansible-playbook, "
                 "its workers, the docker CLI); the test host's own work is not in it",
        "targets": TARGETS,
    }
    failure = None
    try:
        started = time.monotonic()
        start_host(HOST, base_image, "--publish", f"127.0.0.1:{PORT}:80")
        results["host_boot_s"] = round(time.monotonic() - started, 1)

        cold = runner.run("playbooks/deploy.yml", timeout=900)
        results["cold_deploy"] = public(cold)

        deploys, floors = [], []
        for _ in range(args.runs):
            deploys.append(public(runner.run("playbooks/deploy.yml")))
            floors.append(public(runner.run(floor)))
        results["no_change"] = {
            "deploy": deploys, "floor": floors,
            "floor_play": f"gather_facts + {NOOP_TASKS} no-op ansible.builtin.file tasks, same host and connection",
            "deploy_s_median": median([d["wall_s"] for d in deploys]),
            "floor_s_median": median([f["wall_s"] for f in floors]),
            "deploy_round_trips": sorted({d["round_trips"] for d in deploys}),
            "floor_round_trips": sorted({f["round_trips"] for f in floors}),
            "deploy_cpu_s_median": median([d["cpu_s"] for d in deploys]),
            "floor_cpu_s_median": median([f["cpu_s"] for f in floors]),
            "deploy_changed": [(d["recap"] or {}).get("changed") for d in deploys],
        }
        nc = results["no_change"]
        nc["over_floor"] = round(nc["deploy_s_median"] / nc["floor_s_median"], 2)
        if any(c != 0 for c in nc["deploy_changed"]):
            print(f"WARNING: the no-change deploy changed something: changed={nc['deploy_changed']}")

        results["rounds"] = []
        for _ in range(args.runs):
            rnd = {"steady_seconds": args.steady_seconds, "start_release": current_release()}
            results["rounds"].append(rnd)
            rnd["steady"] = {k: v for k, v in steady_load(url, args.rate, args.steady_seconds, args.client_nice).items()
                             if k not in ("timeline", "responses")}
            steady_p99 = rnd["steady"]["p99_ms"]

            def measured(playbook, *extra):
                s = public(under_load(url, args.rate, lambda: runner.run(playbook, *extra), nice=args.client_nice))
                s["p99_over_steady"] = round(s["load"]["p99_ms"] / steady_p99, 2) if s["load"]["p99_ms"] else None
                return s
            rnd["updates"] = []
            for tag in ("v2", "v1"):  # the frontend's image only, then back
                # A longer history: every round returns to the release the cold deploy recorded.
                s = measured("playbooks/update.yml", "-e", f"app_frontend_image={frontend(tag)}",
                             "-e", "app_releases_keep=50")
                s["to"] = tag
                rnd["updates"].append(s)
            # To the release before (frontend v2), then to the one this round started from (v1
            # again, by id: the release history keeps app_releases_keep releases), so the next
            # round starts where this one did.
            rnd["rollbacks"] = [measured("playbooks/rollback.yml"),
                                measured("playbooks/rollback.yml", "-e", "app_rollback_release=" + rnd["start_release"])]
        results["update"] = worst([s for rnd in results["rounds"] for s in rnd["updates"]])
        results["rollback"] = worst([s for rnd in results["rounds"] for s in rnd["rollbacks"]])
    except PlaybookFailed as exc:
        failure = exc
        results["failure"] = {**public(exc.figures), "output_tail": exc.figures["output"][-6000:]}
    finally:
        remove_host(HOST)
        results["machine"]["loadavg_after"] = loadavg()
        results["cpu_s_total"] = round(children_cpu_s() - cpu_start, 1)

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    print(f"written to {args.output}")
    if failure:
        sys.exit(str(failure))


if __name__ == "__main__":
    main()
