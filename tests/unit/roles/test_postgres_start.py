"""roles/app/files/postgres-start with the real sh: the password leaves the server's
environment once the cluster exists, and on a swarm (SELFHOST_POSTGRES_RESTART_AFTER_INIT=1)
the first start restarts the server itself after initdb."""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "app" / "files" / "postgres-start"

# Stands in for the image's entrypoint: "initdb" writes PG_VERSION, then "the server" runs until
# SIGINT; each start logs whether it had the password. pg_isready answers once the server set
# up its signal handlers (as a real server accepts connections only then).
ENTRYPOINT = """#!/bin/sh
echo "start password=${POSTGRES_PASSWORD:-none}" >>"$LOG"
[ -s "$PGDATA/PG_VERSION" ] || { sleep 1; echo 17 >"$PGDATA/PG_VERSION"; }
[ "${ONCE:-}" = 1 ] && exit 0
# A C server sets its own handlers: SIGINT reaches it although sh starts it ignoring SIGINT.
exec python3 -c 'import os, signal, time
def stop(*_):
    open(os.environ["LOG"], "a").write("stopped\\n"); raise SystemExit(0)
signal.signal(signal.SIGINT, stop)
open(os.environ["PGDATA"] + "/ready", "w").close()
while True: time.sleep(0.2)'
"""
PG_ISREADY = """#!/bin/sh
[ -e "$PGDATA/ready" ] && rm -f "$PGDATA/ready"
"""


def setup(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("entrypoint", ENTRYPOINT), ("pg_isready", PG_ISREADY)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    return bin_dir, data


def run(tmp_path, restart, once=False):
    bin_dir, data = tmp_path / "bin", tmp_path / "data"
    env = {"PATH": "%s:/usr/bin:/bin" % bin_dir, "PGDATA": str(data), "LOG": str(tmp_path / "log"),
           "POSTGRES_PASSWORD": "hunter2", "POSTGRES_PASSWORD_FILE": "/run/secrets/db_password"}
    if restart:
        env["SELFHOST_POSTGRES_RESTART_AFTER_INIT"] = "1"
    if once:
        env["ONCE"] = "1"
    return subprocess.Popen(["sh", str(SCRIPT), "entrypoint"], env=env)


def wait_for_log(tmp_path, lines, seconds=20):
    log = tmp_path / "log"
    for _ in range(seconds * 10):
        if log.exists() and len(log.read_text().splitlines()) >= lines:
            return log.read_text().splitlines()
        subprocess.run(["sleep", "0.1"], check=True)
    return log.read_text().splitlines() if log.exists() else []


def test_on_a_swarm_the_first_start_restarts_the_server_without_the_password(tmp_path):
    setup(tmp_path)
    proc = run(tmp_path, restart=True)
    try:
        log = wait_for_log(tmp_path, 3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert log[:3] == ["start password=hunter2", "stopped", "start password=none"], log


def test_a_later_start_has_no_password_and_compose_keeps_its_own_restart(tmp_path):
    _bin, data = setup(tmp_path)
    proc = run(tmp_path, restart=False, once=True)
    assert proc.wait(timeout=10) == 0
    assert (tmp_path / "log").read_text().splitlines() == ["start password=hunter2"]  # Compose restarts it
    assert (data / "PG_VERSION").exists()
    proc = run(tmp_path, restart=True, once=True)
    assert proc.wait(timeout=10) == 0
    assert (tmp_path / "log").read_text().splitlines()[-1] == "start password=none"


def test_a_failing_first_start_passes_its_status_on(tmp_path):
    bin_dir, _data = setup(tmp_path)
    (bin_dir / "entrypoint").write_text("#!/bin/sh\necho 'initdb: error' >&2\nexit 3\n")
    proc = run(tmp_path, restart=True)
    assert proc.wait(timeout=10) == 3
    assert os.path.exists(SCRIPT)
