"""Faults an operator meets, each under a bounded load from this machine (40 requests/s on an
API path that reads PostgreSQL). Each case: the last good release keeps serving with no failed
request (a database password's rotation: none but the old release's refused new logins), no
item written before is lost, and a run afterwards converges.

Tests run in file order; each but the last (the rotation) leaves the host serving v1 with the
inventory's values.
"""

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import (APP_DIR, HOST, LOAD_URL, containers, deploy, item_names, live_files, served_version,
                      wait_healthy)
from testlib import INVENTORY, PROJECT, VAULT_PASSWORD, Load, api, recap, run_playbook, vault_values

VAULT_FILE = PROJECT / "molecule" / "default" / "inventory" / "group_vars" / "all" / "vault.yml"
WRITTEN = []


@pytest.fixture(autouse=True)
def data_is_kept(host):
    """Writes an item before each case and checks every item written so far is there after it."""
    name = "faults-" + uuid.uuid4().hex[:8]
    assert api(host, "POST", "/api/items", {"name": name})[0] == 201
    WRITTEN.append(name)
    yield
    wait_healthy(host)
    assert set(WRITTEN) <= item_names(host)


def ids(host, service):
    return sorted(c["id"] for c in containers(host).values() if c["service"] == service)


def redis_answers(host, password):
    out = host.run("printf 'AUTH \"%%s\"\\nPING\\n' %s | docker exec -i demo-redis-1 redis-cli", password)
    return "PONG" in out.stdout


def pg_accepts(host, password):
    """A password login from a backend container, as the application logs in (the image trusts
    logins over the local socket and 127.0.0.1 inside the PostgreSQL container)."""
    backend = next(n for n, c in containers(host).items() if c["service"] == "backend")
    check = "import sys, psycopg2; psycopg2.connect(host='postgres', dbname='demo', user='demo', password=sys.stdin.read()).close()"
    return host.run("printf '%%s' %s | docker exec -i %s python3 -c %s", password, backend, check).rc == 0


def no_failures(figures):
    assert figures["failed"] == 0, json.dumps(figures)[:3000]


def converges(result):
    assert result.returncode == 0, result.output[-3000:]
    return recap(result.output, HOST)


# -- the switch fails ---------------------------------------------------------------------------

def test_container_docker_refuses_is_removed_and_the_release_keeps_serving(host, extra_vars):
    before = containers(host)
    files = live_files(host)
    # Docker refuses a memory limit under 6 MiB when it creates the container.
    with Load(LOAD_URL) as load:
        result = deploy(*extra_vars(faults_frontend_limits={"memory": "4M"}))
        assert result.returncode != 0
        assert "Minimum memory limit" in result.output, result.output[-3000:]
        assert "Reverted automatically" in result.output
        now = containers(host)
        assert sorted(now) == sorted(before), now
        assert all(c["state"] == "running" for c in now.values())
        figures = load.stop()
    no_failures(figures)
    assert live_files(host) == files
    assert served_version(host) == "v1"
    # The failed try left nothing behind (container, lock, file): a plain run finds nothing to do.
    assert converges(deploy())["changed"] == 0


def refused_before_any_change(host, version, fault=None, repair=None, extra=()):
    """deploy.yml of `version` under load while `fault` (a command on the host) holds, until
    `repair`: the run fails, no request does, and the host's files and version stay as they were.
    Returns the run's output."""
    files = live_files(host)
    before = containers(host)
    if fault:
        host.run_test(fault)
    try:
        with Load(LOAD_URL) as load:
            result = deploy("-e", "app_version=" + version, *extra)
            figures = load.stop()
    finally:
        if repair:
            host.run_test(repair)
    assert result.returncode != 0
    no_failures(figures)
    assert live_files(host) == files and served_version(host) == "v1"
    assert containers(host) == before
    return result.output


def test_image_missing_from_the_registry_is_refused_before_any_change(host):
    output = refused_before_any_change(host, "v404")
    assert "selfhost/demo-backend:v404" in output
    assert "Pull every image of the stack" in output


def test_registry_down_is_refused_before_any_change(host):
    assert host.run("docker image inspect selfhost-registry:5000/selfhost/demo-backend:v2").rc != 0
    output = refused_before_any_change(host, "v2", "iptables -I OUTPUT -p tcp --dport 5000 -j REJECT",
                                       "iptables -D OUTPUT -p tcp --dport 5000 -j REJECT")
    assert "Pull every image of the stack" in output and "connection refused" in output.lower()


def test_full_disk_during_the_pull_is_refused_before_any_change(host):
    # Docker downloads layers to /var/lib/docker/tmp: 4 KiB there is a full disk for the pull
    # without filling this machine's disk.
    output = refused_before_any_change(
        host, "v2", "mkdir -p /var/lib/docker/tmp && mount -t tmpfs -o size=4k tmpfs /var/lib/docker/tmp",
        "umount /var/lib/docker/tmp")
    assert "no space left on device" in output.lower(), output[-3000:]


def static_asset(host):
    """(status, Cache-Control, body) of a static file the edge serves from the frontend's image."""
    out = host.check_output("curl -s -D - http://127.0.0.1/assets/index.html")
    head, _sep, body = out.partition("\r\n\r\n")
    control = next((line.split(":", 1)[1].strip() for line in head.splitlines() if line.lower().startswith("cache-control:")), "")
    return int(head.split()[1]), control, body


def test_static_files_follow_the_image_and_a_missing_path_is_refused_before_any_change(host, extra_vars):
    status, control, body = static_asset(host)
    assert (status, control) == (200, "max-age=3600") and "v1" in body, (status, control, body[:200])
    # A path the image lacks is found before anything on the host changes.
    output = refused_before_any_change(host, "v1", extra=extra_vars(faults_static_from="/srv/nowhere"))
    assert "app_services.frontend.static" in output and "/srv/nowhere" in output, output[-3000:]
    assert static_asset(host)[2] == body
    assert not host.run("ls -a /opt/demo/static/frontend | grep -q tmp").succeeded


# -- the edge -----------------------------------------------------------------------------------

def test_edge_starts_without_backends_and_answers_503(host):
    app = " ".join(n for n, c in containers(host).items() if c["service"] in ("backend", "frontend"))
    assert host.run(f"docker stop {app} demo-nginx-1").rc == 0
    try:
        # The edge starts although no upstream container runs, and says so plainly.
        assert host.run("docker start demo-nginx-1").rc == 0
        deadline = time.monotonic() + 30
        while host.run("docker exec demo-nginx-1 /bin/sh /selfhost/probe http 80 /healthz").rc != 0:
            assert time.monotonic() < deadline, "nginx did not start without its upstreams"
            time.sleep(1)
        out = host.check_output("curl -s -w '\\n%{http_code}' http://127.0.0.1/api/items")
        assert out.endswith("\n503") and "not available right now" in out, out
    finally:
        # Backends that come up later get traffic without a run (the edge re-resolves its pools).
        assert host.run(f"docker start {app} demo-nginx-1").rc == 0
    wait_healthy(host)
    deadline = time.monotonic() + 15
    while api(host, "GET", "/api/version")[0] != 200:
        assert time.monotonic() < deadline, "backend not back in the pool"
        time.sleep(1)


# -- interrupted switches -----------------------------------------------------------------------

def start_update(version, *extra):
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(VAULT_PASSWORD), ANSIBLE_FORCE_COLOR="0")
    return subprocess.Popen(["ansible-playbook", "-i", INVENTORY, "playbooks/update.yml", "-e", "app_version=" + version,
                             *extra], cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_new_backend(host, before, timeout=240):
    """Waits until the switch started a backend container that was not there before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = {n for n, c in containers(host).items() if c["service"] == "backend"}
        if now - before:
            return
        time.sleep(0.5)
    raise AssertionError("the update started no new backend container")


def test_controller_killed_during_the_switch(host):
    before = {n for n, c in containers(host).items() if c["service"] == "backend"}
    with Load(LOAD_URL) as load:
        # A long gate (600 good answers, 0.1 s apart: a minute) keeps the switch busy on the host after its
        # controller is gone, with the old backend still draining: nothing there stops it (it
        # would finish, or revert, and release the lock by itself).
        update = start_update("v2", "-e", "app_gate_successes=600", "-e", "app_gate_timeout=300")
        try:
            wait_new_backend(host, before)
        finally:
            os.killpg(update.pid, signal.SIGKILL)
            update.wait(timeout=30)
        # The next plain run says who holds the lock; a forced one stops that switch and converges.
        result = run_playbook("playbooks/update.yml", "-e", "app_version=v2")
        assert result.returncode != 0 and "another deploy holds the lock" in result.output
        assert "app_lock_force=true" in result.output
        result = run_playbook("playbooks/update.yml", "-e", "app_version=v2", "-e", "app_lock_force=true")
        figures = load.stop()
    converges(result)
    no_failures(figures)
    assert served_version(host) == "v2"
    assert not host.file(f"{APP_DIR}/.deploy.lock").exists
    assert len([c for c in containers(host).values() if c["service"] == "backend"]) == 1
    assert "v2" in static_asset(host)[2]  # copied anew from the new frontend image


def test_host_restarted_during_the_switch(host):
    before = {n for n, c in containers(host).items() if c["service"] == "backend"}
    update = start_update("v1")
    try:
        wait_new_backend(host, before)
        subprocess.run(["docker", "restart", HOST], check=True, capture_output=True, timeout=180)
    finally:
        os.killpg(update.pid, signal.SIGKILL)
        update.wait(timeout=30)
    subprocess.run(["docker", "exec", HOST, "timeout", "120", "systemctl", "is-system-running", "--wait"],
                   capture_output=True, timeout=150, check=False)
    wait_healthy(host, exact=False)  # the interrupted switch's containers may be there too
    assert served_version(host) in ("v1", "v2")  # a release that passed its gate serves
    with Load(LOAD_URL) as load:
        result = run_playbook("playbooks/update.yml", "-e", "app_version=v1", "-e", "app_lock_force=true")
        figures = load.stop()
    converges(result)
    no_failures(figures)
    assert served_version(host) == "v1"


# -- backups ------------------------------------------------------------------------------------

def backup_files(host):
    return host.check_output("cd /var/backups/demo && ls -1 && sha256sum *.dump")


def test_backup_with_postgres_stopped_fails_and_a_plain_run_starts_what_was_stopped(host):
    assert converges(run_playbook("playbooks/backup.yml"))["failed"] == 0
    files = backup_files(host)
    assert host.run("docker stop demo-postgres-1").rc == 0
    result = run_playbook("playbooks/backup.yml")
    assert result.returncode != 0
    assert "postgres" in result.output and "is not running" in result.output, result.output[-3000:]
    assert backup_files(host) == files
    # Nginx stopped by hand too: the plain run starts both again.
    assert host.run("docker stop demo-nginx-1").rc == 0
    converges(deploy())
    assert {n: c["state"] for n, c in containers(host).items() if n in ("demo-nginx-1", "demo-postgres-1")} == {
        "demo-nginx-1": "running", "demo-postgres-1": "running"}
    assert api(host, "GET", "/api/version")[0] == 200
    assert converges(run_playbook("playbooks/backup.yml"))["failed"] == 0


def test_backup_disk_full_fails_and_keeps_the_older_backups(host):
    files = backup_files(host)
    host.run_test("fallocate -l $(( $(df --output=avail -B1 /var/backups/demo | tail -n 1) - 4096 )) /var/backups/demo/filler")
    try:
        result = run_playbook("playbooks/backup.yml")
        assert result.returncode != 0
        assert "no space left" in result.output.lower(), result.output[-3000:]
        # No partial file, nothing pruned.
        assert backup_files(host).replace("filler\n", "") == files
    finally:
        host.run_test("rm -f /var/backups/demo/filler")
    assert converges(run_playbook("playbooks/backup.yml"))["failed"] == 0


# -- secrets (last: it leaves the rotated values, so it does not rotate back) -------------------

def refused_logins(host, since):
    """How many password logins PostgreSQL refused since `since` (a time.time()), from its log."""
    log = host.check_output("docker logs --since %s demo-postgres-1 2>&1", str(int(since)))
    return log.count("password authentication failed")


def test_passwords_and_an_app_secret_rotate_in_the_running_servers(host, extra_vars):
    old = vault_values(VAULT_FILE)
    new = {"app_db_password": "rotated-db-" + uuid.uuid4().hex, "app_redis_password": "rotated-redis-" + uuid.uuid4().hex}
    data_ids = ids(host, "postgres") + ids(host, "redis")
    backend, frontend = ids(host, "backend"), ids(host, "frontend")
    # The database's and Redis's passwords: changed in the running servers, neither is
    # recreated, the backend (which uses both) rolls.
    started = time.time()
    with Load(LOAD_URL) as load:
        result = deploy(*extra_vars(**new))
        figures = load.stop()
    converges(result)
    # Redis holds both passwords until the switch passed. PostgreSQL holds one per role: from the
    # ALTER ROLE to the switch the old backend keeps its open connections but a new one it opens
    # is refused (the role README's note). Only such requests may fail: each a 503 of the
    # backend with a login PostgreSQL refused behind it.
    assert set(figures["failure_reasons"]) <= {"HTTPError: HTTP Error 503: Service Unavailable"}, json.dumps(figures)
    assert figures["failed"] <= refused_logins(host, started), json.dumps(figures)[:3000]
    assert ids(host, "postgres") + ids(host, "redis") == data_ids
    assert ids(host, "backend") != backend
    assert pg_accepts(host, new["app_db_password"]) and not pg_accepts(host, old["vault_app_db_password"])
    assert redis_answers(host, new["app_redis_password"])
    assert not redis_answers(host, old["vault_app_redis_password"])  # the old one is retired
    # An app secret only the frontend reads: the frontend rolls, nothing else.
    backend, frontend = ids(host, "backend"), ids(host, "frontend")
    with Load(LOAD_URL) as load:
        result = deploy(*extra_vars(**new, faults_session_key="second-session-key-" + uuid.uuid4().hex))
        figures = load.stop()
    converges(result)
    no_failures(figures)
    assert ids(host, "frontend") != frontend and ids(host, "backend") == backend
    assert ids(host, "postgres") + ids(host, "redis") == data_ids
