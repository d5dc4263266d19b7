"""The demo as one stack on the swarm (app_engine swarm), deployed from the manager by
playbooks/deploy.yml: placement, secrets, a rolling update with a rotated secret under load, a
broken version that Swarm rolls back, backups and a restore, a killed worker. (test_swarm.py's
rejoin run also repairs a scaled-down service, and rollback.yml runs last, there.)

Tests run in file order (before test_swarm.py, whose runs keep the stack these tests leave,
conftest.APP_STATE) and share the one swarm and stack.
"""

import json
import os
import subprocess
import time

from conftest import (APP_DIR, APP_STATE, LOAD_URL, MANAGER, NODES, ONLY_MANAGER, WORKER1, WORKER2, audit_end,
                      replicas, served_versions)
from testlib import Load, api, recap, run_playbook, window

CONVERGE = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")
DB_PASSWORD, REDIS_PASSWORD = "swarm-db-Secret-4f1c9a", "swarm-redis-Secret-77d2e0"
TOKEN_ONE, TOKEN_TWO = "swarm-token-One-0b5e11", APP_STATE[-1].split("=", 1)[1]
# The rolling update: v2 and a rotated api_token, which the runs after it keep (the broken
# version's keeps the token, TOKEN).
UPDATE = APP_STATE
SECRETS = (DB_PASSWORD, REDIS_PASSWORD, TOKEN_ONE, TOKEN_TWO)
FIGURES = {}
TOKEN = UPDATE[2:]


def running_tasks(manager, service):
    """Nodes of the service's running tasks."""
    lines = manager.check_output("docker service ps demo_%s --filter desired-state=running"
                                 " --format '{{.Node}} {{.CurrentState}}'", service).splitlines()
    return sorted(line.split()[0] for line in lines if " Running " in line)


def backend_image(manager):
    spec = json.loads(manager.check_output("docker service inspect demo_backend"))[0]["Spec"]
    return spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]


def test_the_demo_runs_as_one_stack_placed_as_asked(hosts):
    manager = hosts[MANAGER]
    listed = dict(line.split() for line in manager.check_output(
        "docker stack services demo --format '{{.Name}} {{.Replicas}}'").splitlines())
    assert listed == {"demo_backend": "2/2", "demo_frontend": "1/1", "demo_nginx": "1/1",
                      "demo_postgres": "1/1", "demo_redis": "1/1"}, listed
    assert running_tasks(manager, "backend") == sorted([WORKER1, WORKER2])
    assert running_tasks(manager, "postgres") == running_tasks(manager, "redis") == [WORKER1]
    assert running_tasks(manager, "nginx") == [MANAGER]
    status, health = api(manager, "GET", "/api/health")
    assert status == 200 and health["postgres"] == "ok" and health["redis"] == "ok", health
    assert served_versions(manager) == {"v1"}
    # Nginx sends traffic to both backend tasks: its live pools name two addresses.
    nginx = manager.check_output("docker ps -q --filter label=com.docker.swarm.service.name=demo_nginx")
    pools = manager.check_output("docker exec %s cat /run/selfhost-nginx/upstreams.conf", nginx)
    assert pools.count("# backend") == 2, pools
    stack = manager.file(f"{APP_DIR}/stack.yaml")
    assert stack.mode == 0o640 and "demo_backend__db_password_" in stack.content_string
    assert manager.file(f"{APP_DIR}/releases/current").is_symlink
    # Swarm waits a task's stop_grace_period (app_service_defaults: 30s) before SIGKILL.
    spec = json.loads(manager.check_output("docker service inspect demo_backend"))[0]["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 30 * 10 ** 9
    # playbooks/logs.yml reads every task's logs on the manager: both backends started.
    logs = run_playbook("playbooks/logs.yml", "-e", "service=backend", "-e", "since=2h", "-e", "tail=all")
    assert logs.returncode == 0, logs.output[-2000:]
    started = [line for line in logs.output.splitlines() if "demo-backend v1 listening on" in line]
    assert {WORKER1, WORKER2} <= {w for w in (WORKER1, WORKER2) for line in started if "@" + w in line}, started


def test_a_service_placed_on_a_label_no_node_carries_is_refused_before_any_change(hosts):
    manager = hosts[MANAGER]
    before = manager.file(f"{APP_DIR}/stack.yaml").sha256sum
    run = run_playbook(CONVERGE, *ONLY_MANAGER, "-e", '{"app_swarm_placement": {"backend": ["node.labels.gpu == yes"]}}')
    assert run.returncode != 0
    assert "app_swarm_placement places backend on node.labels.gpu == yes, but no node of the swarm carries" \
        in " ".join(run.output.split()), run.output[-3000:]
    assert recap(run.output, MANAGER)["changed"] == 0
    assert manager.file(f"{APP_DIR}/stack.yaml").sha256sum == before


def test_no_secret_in_inspect_ps_or_the_journal(hosts):
    """Services, tasks, containers, secrets and configs inspected; every process' command line
    and environment (the PostgreSQL server was restarted once after initdb); the docker journal."""
    manager = hosts[MANAGER]
    dumps = [manager.check_output("docker service inspect $(docker service ls -q)"),
             manager.check_output("docker inspect $(docker service ps -q demo_backend demo_postgres demo_redis)"),
             manager.check_output("docker secret inspect $(docker secret ls -q)"),
             manager.check_output("docker config inspect $(docker config ls -q)")]
    for name in NODES:
        host = hosts[name]
        dumps.append(host.check_output("docker inspect $(docker ps -aq)"))
        dumps.append(host.check_output("ps -eo args"))
        dumps.append(host.check_output("cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' || true"))
        dumps.append(host.check_output("journalctl -u docker.service --no-pager"))
    for secret in (DB_PASSWORD, REDIS_PASSWORD, TOKEN_ONE):
        for dump in dumps:
            assert secret not in dump
    # The secret files the stack reads, root-only on the manager.
    listing = manager.check_output("stat -c '%%a %%U %%n' %s/secrets/*/*", APP_DIR).splitlines()
    assert listing and all(line.startswith("400 ") for line in listing), listing


def test_a_rolling_update_with_a_rotated_secret_fails_no_request(hosts):
    """v1 -> v2 and a new api_token in one -vvv run under load: Swarm replaces the backend and
    frontend tasks start-first; the token is a new swarm secret version, the one no spec uses any
    more is removed. PostgreSQL keeps its task; the -vvv output holds no secret."""
    manager = hosts[MANAGER]
    before = set(manager.check_output("docker secret ls --format '{{.Name}}'").split())
    postgres_task = "docker service ps -q --filter desired-state=running demo_postgres"
    postgres = manager.check_output(postgres_task)
    with Load(LOAD_URL, timeline=True) as load:
        started = time.time()
        run = run_playbook(CONVERGE, *ONLY_MANAGER, "-vvv", *UPDATE)
        wall = time.time() - started
        figures = load.stop()
    assert run.returncode == 0, run.output[-4000:]
    during = window(figures, started, started + wall)
    FIGURES["rolling_update"] = dict(during, wall_seconds=round(wall, 1))
    print("swarm rolling update v1 -> v2 with a rotated secret:", FIGURES["rolling_update"])
    assert during["requests"] > 100 and figures["failed"] == 0, figures
    for secret in SECRETS:
        assert secret not in run.output
    assert served_versions(manager) == {"v2"}
    # On the workers, but not always one on each: during a start-first update Swarm places a new
    # task beside the old ones, and it counts the old tasks still running.
    assert len(running_tasks(manager, "backend")) == 2 and set(running_tasks(manager, "backend")) <= {WORKER1, WORKER2}
    for node in running_tasks(manager, "backend"):
        task = hosts[node].check_output("docker ps -q --filter label=com.docker.swarm.service.name=demo_backend")
        for container in task.split():
            assert hosts[node].check_output("docker exec %s cat /run/secrets/api_token", container) == TOKEN_TWO
    after = set(manager.check_output("docker secret ls --format '{{.Name}}'").split())
    added = after - before
    assert [n.rsplit("_", 1)[0] for n in added] == ["demo_backend__api_token"], (added, before - after)
    # No version is left that neither the current nor the previous spec of a service names (the
    # previous spec's stay: a rollback needs them).
    used = set()
    for service in json.loads(manager.check_output("docker service inspect $(docker service ls -q)")):
        for spec in (service["Spec"], service.get("PreviousSpec") or {}):
            used |= {s["SecretName"] for s in spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Secrets", [])}
    assert after <= used, after - used
    assert manager.check_output(postgres_task) == postgres
    assert audit_end(manager)["result"] == "ok"
    assert recap(run.output, MANAGER)["failed"] == 0


def test_a_broken_version_rolls_back_by_itself_and_the_play_names_the_service(hosts):
    """The broken build's healthcheck fails: Swarm rolls the backend back while the old tasks
    keep serving, the play fails naming the service, and the host stays on v2's release."""
    manager = hosts[MANAGER]
    current = manager.file(f"{APP_DIR}/releases/current").linked_to
    with Load(LOAD_URL, timeline=True) as load:
        run = run_playbook(CONVERGE, *ONLY_MANAGER, *TOKEN, "-e", "app_version=broken")
        figures = load.stop()
    assert run.returncode != 0
    assert "Swarm rolled back the update of backend" in run.output, run.output[-4000:]
    assert "Reverted automatically" in run.output
    print("swarm broken update:", {k: figures[k] for k in ("requests", "failed", "p99_ms", "max_ms") if k in figures})
    assert figures["failed"] == 0, figures
    assert served_versions(manager) == {"v2"}
    assert backend_image(manager).endswith(":v2")
    assert manager.file(f"{APP_DIR}/releases/current").linked_to == current
    end = audit_end(manager)
    assert end["result"].startswith("reverted to ") and "backend" in end["reason"], end


def psql(host, sql):
    """Rows of a query in the PostgreSQL task on this node, as its own user."""
    out = host.check_output(
        "docker exec $(docker ps -q --filter label=com.docker.swarm.service.name=demo_postgres) "
        "sh -c 'psql -X -q -A -t -v ON_ERROR_STOP=1 -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -c \"%s\"'" % sql)
    return out.splitlines()


def test_backups_and_a_restore_run_against_the_postgres_task_on_its_node(hosts):
    """backup_enabled on worker1, the node PostgreSQL is placed on: the timer is there only; a
    backup is verified by restoring it into a throwaway container on that node; a restore brings
    back exactly the rows of the backup, with the backend scaled to 0 through the manager meanwhile
    and back to its 2 replicas, healthy."""
    manager, worker1 = hosts[MANAGER], hosts[WORKER1]
    assert worker1.service("selfhost-backup-demo.timer").is_enabled
    assert not hosts[WORKER2].file("/etc/selfhost-backup/demo.json").exists
    psql(worker1, "DROP TABLE IF EXISTS swarm_probe; CREATE TABLE swarm_probe (id int);"
                  " INSERT INTO swarm_probe SELECT generate_series(1, 3)")
    run = run_playbook("playbooks/backup.yml", "--limit", WORKER1, "-e", "backup_verify=true")
    assert run.returncode == 0, run.output[-4000:]
    assert "restores with every table's row count equal to the live database" in run.output
    assert worker1.file("/var/backups/demo").mode == 0o700
    assert len(worker1.check_output("ls /var/backups/demo/*.dump").split()) == 1

    psql(worker1, "INSERT INTO swarm_probe VALUES (4), (5)")
    started = time.time()
    run = run_playbook("playbooks/restore.yml", "--limit", WORKER1)
    FIGURES["restore_s"] = round(time.time() - started, 1)
    assert run.returncode == 0, run.output[-4000:]
    assert psql(worker1, "SELECT id FROM swarm_probe ORDER BY id") == ["1", "2", "3"]
    print("swarm restore: %.1f s" % FIGURES["restore_s"])
    assert "Scale the Swarm services that write to the database to 0 tasks" in run.output
    assert "changed: [selfhost-swarm-worker1 -> selfhost-swarm-manager]" in run.output
    assert replicas(manager)["demo_backend"] == "2/2"
    status, health = api(manager, "GET", "/api/health")
    assert status == 200 and health["postgres"] == "ok", health
    # The safety backup of the rows before the restore.
    assert len(worker1.check_output("ls /var/backups/demo/*.dump").split()) == 2


def test_a_killed_worker_loses_no_request_and_its_tasks_run_on_the_other(hosts):
    """A worker's whole test host is killed under load (worker2 when it runs a backend task, as
    the data node worker1 holds PostgreSQL and Redis, which cannot move): Swarm runs its backend
    task on the other worker, the edge leaves the lost task out, and no request fails. Then it is
    started again and is a ready node once more, with every service running."""
    manager = hosts[MANAGER]
    victim = WORKER2 if WORKER2 in running_tasks(manager, "backend") else WORKER1
    survivor = WORKER1 if victim == WORKER2 else WORKER2
    with Load(LOAD_URL, timeline=True, settle=5) as load:
        killed = time.time()
        subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
        back = None
        while time.time() < killed + 120:
            if running_tasks(manager, "backend") == [survivor, survivor]:
                back = time.time()
                break
            time.sleep(1)
        figures = load.stop()
    FIGURES["killed_worker"] = {
        "killed": victim, "tasks_back_after_s": round(back - killed, 1) if back else None,
        "until_back": window(figures, killed, back), "after_back": window(figures, back, None) if back else None,
        "failed": figures["failed"], "requests": figures["requests"]}
    print("swarm worker killed:", FIGURES["killed_worker"])
    # Back before any assertion: the tests after this one need every node.
    subprocess.run(["docker", "start", victim], check=True, capture_output=True)

    def recovered():
        nodes = manager.run("docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}'").stdout
        services = manager.run("docker stack services demo --format '{{.Replicas}}'").stdout.split()
        return f"{victim} Ready Active" in nodes and services and all(r.split("/")[0] == r.split("/")[1]
                                                                       for r in services)
    deadline = time.time() + 180
    while not recovered() and time.time() < deadline:
        time.sleep(2)
    assert back, manager.check_output("docker service ps demo_backend")
    assert figures["failed"] == 0, figures
    assert served_versions(manager) == {"v2"}
    assert recovered(), manager.check_output("docker node ls; docker stack services demo")
