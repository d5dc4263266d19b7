#!/usr/bin/env python3
"""Times the backup role's backup and restore against plain pg_dump -Fc / pg_restore on one test host.

A fresh Debian 13 test host gets the stack and scheduled backups from playbooks/deploy.yml (the
backup scenario's inventory), then a database of about --size-mb MB (default 1024) is generated
in the stack's PostgreSQL. In the same run and on the same database:

  our backup     systemctl start selfhost-backup-demo.service (pg_dump -Fc, sha256, fsync,
                 pg_restore --list check, rename, prune, status file)
  plain backup   docker compose exec -T postgres pg_dump -Fc ... > file
  our restore    selfhost-backup demo restore latest (sha256 check, then pg_restore --clean
                 --if-exists --single-transaction --exit-on-error)
  plain restore  docker compose exec -T postgres pg_restore --clean --if-exists ... < file
  restore.yml    the whole playbook (stop backend, restore, start, health), for information

Both sides run pg_dump/pg_restore inside the same container through docker compose exec.
Run after scripts/setup.sh, inside the venv:  python benchmarks/backup.py [--size-mb 1024] [--runs 3]
Prints the figures and writes benchmarks/results/backup.json. Target (issue 6): our backup and our
restore each within 1.1 x the plain commands.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "molecule" / "backup"
HOST = "selfhost-bench-backup"
APP_DIR = "/opt/demo"
UNIT = "selfhost-backup-demo.service"
COMPOSE = f"docker compose --project-directory {APP_DIR}"
IN_PG = f"{COMPOSE} exec -T postgres sh -c"
PSQL = """psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" """
PLAIN_DUMP = "/var/tmp/plain.dump"
BATCH_ROWS = 400_000
MAX_BATCHES = 200
TARGET_RATIO = 1.1


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def on_host(script, timeout=7200):
    """Run a bash script on the test host; its stdout."""
    result = subprocess.run(["docker", "exec", HOST, "bash", "-euo", "pipefail", "-c", script],
                            capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        sys.exit(f"on {HOST} failed (rc {result.returncode}): {script}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def sql(statement, timeout=7200):
    quoted = "'" + (PSQL + '-c "' + statement.replace('"', '\\"') + '"').replace("'", "'\\''") + "'"
    return on_host(f"{IN_PG} {quoted}", timeout=timeout).strip()


def timed(script):
    """Wall time of a command on the host, measured there."""
    out = on_host(f"s=$(date +%s.%N); {script}; e=$(date +%s.%N); echo \"__elapsed $s $e\"")
    start, end = [float(x) for x in out.strip().splitlines()[-1].split()[1:]]
    return end - start


def playbook(inventory, name, *extra):
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(SCENARIO / "vault-password"), ANSIBLE_FORCE_COLOR="0")
    start = time.monotonic()
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), f"playbooks/{name}", *extra], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    return time.monotonic() - start


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def generate(size_mb):
    """A realistic table: random accounts and times, partly compressible text, an index."""
    target = size_mb * 1024 * 1024
    sql("CREATE TABLE IF NOT EXISTS bench_events (id bigserial PRIMARY KEY, account integer NOT NULL, "
        "created_at timestamptz NOT NULL, kind text NOT NULL, payload text NOT NULL)")
    sql("CREATE INDEX IF NOT EXISTS bench_events_account ON bench_events (account)")
    insert = ("INSERT INTO bench_events (account, created_at, kind, payload) "
              "SELECT (random() * 100000)::int, now() - random() * interval '365 days', "
              "(ARRAY['login', 'order', 'refund', 'view', 'search'])[1 + (random() * 4)::int], "
              "md5(random()::text) || ' ' || md5(random()::text) || ' status=ok region=eu-central items=' || (random() * 20)::int "
              f"FROM generate_series(1, {BATCH_ROWS})")
    size = int(sql("SELECT pg_database_size(current_database())"))
    batches = 0
    while size < target and batches < MAX_BATCHES:
        sql(insert)
        batches += 1
        size = int(sql("SELECT pg_database_size(current_database())"))
        log(f"generated {batches * BATCH_ROWS} rows, database {size / 2**20:.0f} MB")
    sql("VACUUM ANALYZE bench_events")
    return int(sql("SELECT pg_database_size(current_database())")), int(sql("SELECT count(*) FROM bench_events"))


def row_count():
    return int(sql("SELECT count(*) FROM bench_events"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="database size to generate (MB, default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement, order alternating (median reported)")
    parser.add_argument("--keep-host", action="store_true", help="leave the test host running afterwards")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "backup.json"))
    args = parser.parse_args()

    image = os.environ.get("SELFHOST_DOCKER_HOST_IMAGE") or os.environ.get("SELFHOST_BASE_IMAGE")
    if not image:
        sys.exit("source .harness.env first")
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    inventory = work / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    {HOST}:\n      ansible_connection: community.docker.docker\n")
    (work / "group_vars").symlink_to(SCENARIO / "inventory" / "group_vars")

    subprocess.run(["docker", "rm", "-fv", HOST], capture_output=True, check=False)
    # Not labelled selfhost.test: scripts/test.sh removes those when a step ends.
    subprocess.run([str(ROOT / "tests/harness/testhost.sh"), HOST, image, "--label", "selfhost.bench=1"], check=True)
    figures = {"size_mb_target": args.size_mb, "runs": args.runs, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_start": loadavg()}}
    try:
        log("deploying the stack with scheduled backups (playbooks/deploy.yml)")
        figures["deploy_s"] = round(playbook(inventory, "deploy.yml"), 1)
        log(f"generating about {args.size_mb} MB of data")
        started = time.monotonic()
        database_bytes, rows = generate(args.size_mb)
        figures.update(generate_s=round(time.monotonic() - started, 1), database_bytes=database_bytes, rows=rows)

        ours_backup, plain_backup, ours_restore, plain_restore = [], [], [], []
        steps = {
            "our backup": (ours_backup, f"systemctl start {UNIT}"),
            "plain backup": (plain_backup, f"{IN_PG} 'exec pg_dump -Fc -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\"' > {PLAIN_DUMP}"),
            "our restore": (ours_restore, "selfhost-backup demo restore latest"),
            "plain restore": (plain_restore,
                              f"{IN_PG} 'exec pg_restore --clean --if-exists -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\"' < {PLAIN_DUMP}"),
        }
        for run in range(args.runs):
            # The order alternates between runs (ours first, then plain first): the machine is shared
            # and its load drifts, which would otherwise always favour the same side.
            pairs = [("our backup", "plain backup"), ("our restore", "plain restore")]
            if run % 2:
                pairs = [tuple(reversed(pair)) for pair in pairs]
            for name in [step for pair in pairs for step in pair]:
                log(f"run {run + 1}: {name}")
                samples, command = steps[name]
                samples.append(timed(command))
                if "restore" in name and row_count() != rows:
                    sys.exit(f"{name} lost rows")

        newest = json.loads(on_host("selfhost-backup demo list"))[0]
        status = on_host("cat /var/lib/node_exporter/textfile_collector/selfhost_backup_demo.prom")
        log("restore.yml (safety backup off: the playbook's own overhead on top of the restore)")
        figures["restore_playbook_s"] = round(
            playbook(inventory, "restore.yml", "-e", "backup_restore_safety_backup=false"), 1)
        if row_count() != rows:
            sys.exit("restore.yml lost rows")

        med = statistics.median
        figures["machine"]["loadavg_end"] = loadavg()
        figures.update({
            "our_backup_s": round(med(ours_backup), 2),
            "plain_backup_s": round(med(plain_backup), 2),
            "backup_ratio": round(med(ours_backup) / med(plain_backup), 3),
            "our_restore_s": round(med(ours_restore), 2),
            "plain_restore_s": round(med(plain_restore), 2),
            "restore_ratio": round(med(ours_restore) / med(plain_restore), 3),
            "all_runs_s": {"our_backup": [round(x, 2) for x in ours_backup], "plain_backup": [round(x, 2) for x in plain_backup],
                           "our_restore": [round(x, 2) for x in ours_restore],
                           "plain_restore": [round(x, 2) for x in plain_restore]},
            "our_backup_bytes": newest["size"],
            "plain_backup_bytes": int(on_host(f"stat -c %s {PLAIN_DUMP}")),
            "status_file_duration_s": float([line for line in status.splitlines()
                                             if line.startswith("selfhost_backup_last_duration_seconds")][0].split()[-1]),
            "target_ratio": TARGET_RATIO,
        })
        figures["backup_within_target"] = figures["backup_ratio"] <= TARGET_RATIO
        figures["restore_within_target"] = figures["restore_ratio"] <= TARGET_RATIO
    finally:
        if not args.keep_host:
            subprocess.run(["docker", "rm", "-fv", HOST], capture_output=True, check=False)

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"database: {figures['database_bytes'] / 2**20:.0f} MB, {figures['rows']} rows "
          f"(generated in {figures['generate_s']} s)")
    print(f"backup:  ours {figures['our_backup_s']} s ({figures['our_backup_bytes'] / 2**20:.1f} MB)  "
          f"plain pg_dump -Fc {figures['plain_backup_s']} s ({figures['plain_backup_bytes'] / 2**20:.1f} MB)  "
          f"ratio {figures['backup_ratio']} (target <= {TARGET_RATIO})")
    print(f"restore: ours {figures['our_restore_s']} s  plain pg_restore {figures['plain_restore_s']} s  "
          f"ratio {figures['restore_ratio']} (target <= {TARGET_RATIO}); restore.yml end to end {figures['restore_playbook_s']} s")
    print(f"load average start {figures['machine']['loadavg_start']}, end {figures['machine']['loadavg_end']} "
          f"({figures['machine']['cpus']} CPUs, shared)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
