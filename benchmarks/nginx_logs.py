#!/usr/bin/env python3
"""Where the edge Nginx's access log goes under load: a bounded burst of requests on logged
paths, with the Nginx container's memory (cgroup), its /var/log/nginx tmpfs and its Docker
log (the `local` driver's files) measured before and after.

The site logs to /dev/stdout, so the lines land in `docker logs` (files on the host's disk,
rotated at app_log_max_size x app_log_max_file) and /var/log/nginx, still a tmpfs, should
receive nothing: no memory that grows with the number of requests inside the 128M limit.

One test host from SELFHOST_DOCKER_HOST_IMAGE, the demo deployed with playbooks/deploy.yml;
the client runs inside the test host against 127.0.0.1:80 (ApacheBench from Debian's
apache2-utils, or a bounded keep-alive http.client loop where it cannot be installed).
Memory (cgroup v1 or v2 usage and memory.stat, and `docker stats`) is read before the load and
after each round of requests has ended and a few seconds have passed, so a one-time warm-up
shows apart from growth per request. The image's nginx.conf still writes its main-context
error_log (start-up and reload notices) to /var/log/nginx/error.log: the tmpfs hides the
image's symlinks to /dev/stderr; the JSON records that file's size and tail.
Run after scripts/setup.sh, inside the venv:
    python benchmarks/nginx_logs.py [--requests 100000] [--concurrency 10]
Prints the figures and writes benchmarks/results/nginx_logs.json.
"""

import argparse
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, one_host_inventory, remove_host, start_host

sys.path.insert(0, str(ROOT / "molecule" / "shared"))
from testlib import run_playbook  # noqa: E402

HOST = "selfhost-bench-nginx-logs"
PROJECT = "demo"
USER_AGENT = "selfhost-bench-nginx-logs"

# The fallback client: N requests in all, C threads with one keep-alive connection each,
# stopped by the count or by the deadline, whichever comes first.
PY_CLIENT = r'''
import http.client, json, sys, threading, time
port, paths, total, conc = int(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
deadline, ua = time.monotonic() + float(sys.argv[5]), sys.argv[6]
lock = threading.Lock()
state = {"next": 0, "ok": 0, "non2xx": 0, "errors": 0}
def worker():
    conn = None
    while time.monotonic() < deadline:
        with lock:
            i = state["next"]
            if i >= total:
                return
            state["next"] += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", paths[i % len(paths)], headers={"User-Agent": ua})
            resp = conn.getresponse()
            resp.read()
            key = "ok" if 200 <= resp.status < 300 else "non2xx"
            if resp.getheader("Connection", "").lower() == "close":
                conn.close(); conn = None
        except Exception:
            key = "errors"
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            state[key] += 1
start = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.monotonic() - start
done = state["ok"] + state["non2xx"] + state["errors"]
print(json.dumps({"complete": done, "failed": state["errors"], "non2xx": state["non2xx"], "seconds": elapsed,
                  "stopped_by_deadline": done < total}))
'''


def sh(*cmd, timeout=300, check=True):
    result = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, check=False)
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(cmd)[:200]} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def host_sh(script, timeout=300, check=True):
    return sh("docker", "exec", HOST, "sh", "-c", script, timeout=timeout, check=check)


def install_ab():
    """ApacheBench in the test host from Debian's archive: True if it is there afterwards."""
    result = host_sh("command -v ab || (DEBIAN_FRONTEND=noninteractive apt-get update -qq"
                     " && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends apache2-utils)"
                     " >/dev/null 2>&1; command -v ab", timeout=600, check=False)
    return result.returncode == 0 and "ab" in result.stdout


UNITS = {"B": 1 / 1024, "KiB": 1, "kB": 1000 / 1024, "MiB": 1024, "MB": 1000 ** 2 / 1024, "GiB": 1024 ** 2, "GB": 1000 ** 3 / 1024}


def cgroup_dir(container):
    """The Nginx container's memory cgroup as the test host sees it (the test host shares the
    machine's cgroup namespace and /sys/fs/cgroup), found from its main process: ("v2", dir) on
    the unified hierarchy, ("v1", dir) on the v1 memory controller, or None where neither has
    the files (then memory comes from `docker stats` alone)."""
    out = host_sh(f"""pid=$(docker inspect -f '{{{{.State.Pid}}}}' {container})
v2=$(sed -n 's/^0:://p' /proc/$pid/cgroup)
v1=$(sed -n 's/^[0-9]*:\\([^:]*,\\)*memory\\(,[^:]*\\)*://p' /proc/$pid/cgroup)
if [ -f "/sys/fs/cgroup$v2/memory.current" ]; then echo "v2 /sys/fs/cgroup$v2"
elif [ -n "$v1" ] && [ -f "/sys/fs/cgroup/memory$v1/memory.usage_in_bytes" ]; then echo "v1 /sys/fs/cgroup/memory$v1"
else echo "no memory cgroup found; /proc/$pid/cgroup: $(cat /proc/$pid/cgroup)" >&2; exit 1
fi""", check=False)
    if out.returncode:
        print(out.stderr.strip(), file=sys.stderr)
        return None
    return tuple(out.stdout.split())


# usage, peak, limit, then memory.stat lines and the OOM kill count, per cgroup version.
CGROUP_READ = {
    "v2": "cat memory.current; cat memory.peak 2>/dev/null || echo -; cat memory.max; cat memory.stat;"
          " grep '^oom_kill ' memory.events || true",
    "v1": "cat memory.usage_in_bytes memory.max_usage_in_bytes memory.limit_in_bytes memory.stat;"
          " echo kmem $(cat memory.kmem.usage_in_bytes 2>/dev/null || echo 0); grep '^oom_kill ' memory.oom_control || true",
}
STAT_KEYS = {"v2": ("anon", "file", "shmem", "kernel", "sock"),
             "v1": ("rss", "cache", "shmem", "mapped_file", "active_file", "inactive_file", "kmem")}


def snapshot(container, cg):
    """The Nginx container's memory, tmpfs and Docker log, as the test host sees them."""
    stats = host_sh(f"docker stats --no-stream --format '{{{{.MemUsage}}}}' {container}").stdout.strip()
    if cg:
        lines = host_sh(f"cd {cg[1]} && {{ {CGROUP_READ[cg[0]]}; }}").stdout.split("\n")
    else:
        used = re.match(r"([\d.]+)(\w+)", stats)
        lines = [str(int(float(used.group(1)) * UNITS[used.group(2)] * 1024)), "-", "?"]
    stat = dict(line.split() for line in lines[3:] if len(line.split()) == 2)
    tmpfs = host_sh(f"docker exec {container} sh -c 'du -sk /var/log/nginx; ls -la /var/log/nginx'").stdout
    logdir = f"/var/lib/docker/containers/{container}/local-logs"
    files = host_sh(f"ls -l --time-style=+ {logdir} | tail -n +2; du -sk {logdir}").stdout.splitlines()
    state = host_sh(f"docker inspect --format '{{{{.RestartCount}}}} {{{{.State.OOMKilled}}}} {{{{.State.StartedAt}}}}' {container}"
                    ).stdout.split()
    return {
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "memory_current_kb": int(lines[0]) // 1024,
        "memory_peak_kb": int(lines[1]) // 1024 if lines[1].isdigit() else None,
        "memory_limit": lines[2],
        "memory_stat_kb": {k: int(stat[k]) // 1024 for k in STAT_KEYS[cg[0]] if k in stat} if cg else {},
        "oom_kills": int(stat.get("oom_kill", 0)),
        "memory_source": f"cgroup {cg[0]} {cg[1]}" if cg else "docker stats (no memory cgroup found)",
        "docker_stats_mem_usage": stats,
        "tmpfs_var_log_nginx_kb": int(tmpfs.split()[0]),
        "tmpfs_var_log_nginx_listing": [line for line in tmpfs.splitlines()[1:]
                                        if not line.endswith((" .", " ..")) and not line.startswith("total ")],
        "tmpfs_error_log_tail": host_sh(f"docker exec {container} sh -c 'tail -n 5 /var/log/nginx/error.log 2>/dev/null'",
                                        check=False).stdout.splitlines(),
        "docker_log_kb": int(files[-1].split()[0]),
        "docker_log_files": {line.split()[-1]: int(line.split()[4]) for line in files[:-1]},
        "restart_count": int(state[0]),
        "oom_killed": state[1] == "true",
        "started_at": state[2],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def run_ab(path, count, concurrency, max_seconds):
    # -k keep-alive, -s per-request timeout, -r go on after a receive error, -t the time bound
    # (with -t, ab stops at -n requests or -t seconds, whichever comes first).
    out = host_sh(f"timeout {max_seconds + 30} ab -q -k -r -s 10 -t {max_seconds} -n {count} -c {concurrency}"
                  f" -H {shlex.quote('User-Agent: ' + USER_AGENT)} http://127.0.0.1:80{path}",
                  timeout=max_seconds + 60, check=False)
    text = out.stdout

    def num(label, default=None):
        m = re.search(rf"^{label}:\s+([\d.]+)", text, re.M)
        return float(m.group(1)) if m else default

    if num("Complete requests") is None:
        raise RuntimeError(f"ab on {path} gave no result (exit {out.returncode}):\n{text[-2000:]}\n{out.stderr[-2000:]}")
    detail = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", text)
    connect, receive, length, exceptions = (int(x) for x in detail.groups()) if detail else (0, 0, 0, 0)
    return {
        "path": path, "client": "ab", "requested": count,
        "complete": int(num("Complete requests")),
        # ab counts a response whose length differs from the first one as failed ("Length");
        # that is no failure of the server, so it is kept apart.
        "failed": connect + receive + exceptions, "length_differs": length,
        "non2xx": int(num("Non-2xx responses", 0)),
        "seconds": num("Time taken for tests"), "rps": num("Requests per second"),
        "stopped_by_deadline": int(num("Complete requests")) < count,
    }


def run_python(path, count, concurrency, max_seconds):
    out = subprocess.run(
        ["docker", "exec", "-i", HOST, "python3", "-", "80", path, str(count), str(concurrency), str(max_seconds), USER_AGENT],
        input=PY_CLIENT, text=True, capture_output=True, timeout=max_seconds + 60, check=True)
    figures = json.loads(out.stdout)
    figures.update(path=path, client="python http.client keep-alive", requested=count,
                   rps=round(figures["complete"] / figures["seconds"], 1), length_differs=0)
    return figures


def access_lines(container):
    """How many of our requests `docker logs` shows, and one of those lines."""
    out = host_sh(f"docker logs {container} 2>/dev/null | grep -F {USER_AGENT} | wc -l;"
                  f" docker logs --tail 2000 {container} 2>/dev/null | grep -F {USER_AGENT} | tail -1", timeout=600).stdout
    count, _, sample = out.partition("\n")
    return int(count), sample.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100000, help="requests in all (split over rounds and paths)")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--paths", default="/,/api/health", help="logged paths, comma-separated (not /healthz)")
    parser.add_argument("--rounds", type=int, default=4, help="memory is read after each round")
    parser.add_argument("--settle", type=float, default=5, help="seconds between the end of a round and the reading")
    parser.add_argument("--max-seconds", type=int, default=600, help="time bound of each client run")
    parser.add_argument("--client", choices=("auto", "ab", "python"), default="auto")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "nginx_logs.json"))
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    if "/healthz" in paths:
        sys.exit("/healthz is not logged (access_log off): pick logged paths")
    image = os.environ.get("SELFHOST_DOCKER_HOST_IMAGE") or sys.exit("source .harness.env first")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))

    inventory = str(one_host_inventory(HOST, "bench-nginx-logs-"))
    results = {"requests": args.requests, "concurrency": args.concurrency, "paths": paths, "rounds": args.rounds,
               "settle_s": args.settle, "host_image": image, "cpus": os.cpu_count(),
               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    start_host(HOST, image)
    try:
        deployed = run_playbook("playbooks/deploy.yml", inventory=inventory)
        if deployed.returncode:
            sys.exit("deploy.yml failed:\n" + deployed.output[-4000:])
        client = args.client
        if client in ("auto", "ab"):
            has_ab = install_ab()
            if client == "ab" and not has_ab:
                sys.exit("apache2-utils could not be installed in the test host")
            client = "ab" if has_ab else "python"
        results["client"] = client
        container = host_sh(f"docker ps -q --no-trunc --filter label=com.docker.compose.project={PROJECT}"
                            " --filter label=com.docker.compose.service=nginx").stdout.strip()
        if not container or "\n" in container:
            sys.exit(f"expected one Nginx container, found: {container!r}")
        results["site_log_directives"] = sorted(set(host_sh(
            f"grep -rhoE '(access|error)_log [^;]+' /opt/{PROJECT}/nginx/").stdout.split("\n")) - {""})
        results["access_lines_before"], _ = access_lines(container)
        time.sleep(args.settle)
        cg = cgroup_dir(container)
        snaps = [snapshot(container, cg)]
        runs = []
        per_run = args.requests // (args.rounds * len(paths))
        extra = args.requests - per_run * args.rounds * len(paths)
        run = run_ab if client == "ab" else run_python
        for rnd in range(args.rounds):
            for i, path in enumerate(paths):
                count = per_run + (extra if rnd == args.rounds - 1 and i == len(paths) - 1 else 0)
                figures = run(path, count, args.concurrency, args.max_seconds)
                figures["round"] = rnd + 1
                runs.append(figures)
                print(f"round {rnd + 1} {path:<12} {figures['complete']:>7} requests  {figures['rps']:>8.1f} req/s"
                      f"  failed {figures['failed']}  non-2xx {figures['non2xx']}", flush=True)
            time.sleep(args.settle)
            snaps.append(snapshot(container, cg))
        results["access_lines_after"], results["access_line_sample"] = access_lines(container)
        results["docker_logs_of_container_kb_files"] = snaps[-1]["docker_log_files"]
    finally:
        remove_host(HOST)

    complete = sum(r["complete"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    before, after = snaps[0], snaps[-1]
    mem_delta = after["memory_current_kb"] - before["memory_current_kb"]
    last_round = sum(r["complete"] for r in runs if r["round"] == args.rounds)
    last_delta = after["memory_current_kb"] - snaps[-2]["memory_current_kb"]
    results.update({
        "runs": runs,
        "snapshots": snaps,
        "complete": complete,
        "failed": sum(r["failed"] for r in runs),
        "non2xx": sum(r["non2xx"] for r in runs),
        "length_differs_ab": sum(r["length_differs"] for r in runs),
        "rps_overall": round(complete / seconds, 1),
        "memory_before_kb": before["memory_current_kb"],
        "memory_after_kb": after["memory_current_kb"],
        "memory_delta_kb": mem_delta,
        "memory_delta_kb_per_1000_requests": round(mem_delta / complete * 1000, 2),
        "memory_delta_kb_by_round": [b["memory_current_kb"] - a["memory_current_kb"] for a, b in zip(snaps, snaps[1:])],
        "memory_delta_last_round_kb": last_delta,
        "memory_delta_last_round_kb_per_1000_requests": round(last_delta / last_round * 1000, 2),
        "memory_stat_delta_kb": {k: v - before["memory_stat_kb"].get(k, 0) for k, v in after["memory_stat_kb"].items()},
        "tmpfs_before_kb": before["tmpfs_var_log_nginx_kb"],
        "tmpfs_after_kb": after["tmpfs_var_log_nginx_kb"],
        "docker_log_before_kb": before["docker_log_kb"],
        "docker_log_after_kb": after["docker_log_kb"],
        "docker_log_bound": "local driver, max-size 10m x max-file 3 (rotated files compressed), on the host's disk",
        "nginx_restarts_or_oom": after["restart_count"] != before["restart_count"] or after["oom_killed"]
        or after["oom_kills"] != before["oom_kills"],
        "old_file_log_estimate_kb_per_1000_requests": round(116 * 1000 / 1024, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    })
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")

    print(f"client {client}, concurrency {args.concurrency}, paths {', '.join(paths)}")
    print(f"requests: {complete} complete, {results['failed']} failed, {results['non2xx']} non-2xx,"
          f" {results['rps_overall']} req/s overall")
    print(f"nginx memory (cgroup usage): {before['memory_current_kb']} KB -> {after['memory_current_kb']} KB"
          f" (delta {mem_delta:+d} KB, {results['memory_delta_kb_per_1000_requests']:+.2f} KB per 1000 requests;"
          f" last round {last_delta:+d} KB); docker stats {before['docker_stats_mem_usage']} -> {after['docker_stats_mem_usage']}")
    print(f"  by round (KB): {results['memory_delta_kb_by_round']}; {after['memory_source']}")
    print("  memory.stat KB: " + ", ".join(f"{k} {before['memory_stat_kb'][k]} -> {v}" for k, v in after["memory_stat_kb"].items()))
    print(f"  peak {after['memory_peak_kb']} KB, limit {after['memory_limit']}; restarts/OOM: {results['nginx_restarts_or_oom']}")
    print(f"/var/log/nginx tmpfs: {before['tmpfs_var_log_nginx_kb']} KB -> {after['tmpfs_var_log_nginx_kb']} KB"
          f"  {after['tmpfs_var_log_nginx_listing']}")
    print(f"  error.log tail: {after['tmpfs_error_log_tail']}")
    print(f"docker log (local driver): {before['docker_log_kb']} KB -> {after['docker_log_kb']} KB"
          f"  files {after['docker_log_files']}")
    print(f"access lines of ours in docker logs: {results['access_lines_before']} -> {results['access_lines_after']}")
    print(f"  e.g. {results['access_line_sample'][:200]}")
    print(f"(the old file log, ~116 B a request, would have been ~{results['old_file_log_estimate_kb_per_1000_requests']}"
          f" KB per 1000 requests in the tmpfs)")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
