"""roles/backup/files/selfhost_backup.py finds the PostgreSQL container it runs pg_dump and
pg_restore in: the Compose service's container, or on a swarm the task of APP_SERVICE that runs
on this node. A stand-in `docker` on PATH logs its arguments and answers `ps` like the real one."""

import importlib.util
import sys
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[4] / "roles" / "backup" / "files"
ROTATION = Path(__file__).resolve().parents[4] / "plugins" / "module_utils"

# Prints the IDs in $DOCKER_IDS for `docker ps` and `docker compose ps`, and logs every call.
DOCKER = """#!/bin/sh
echo "$*" >>"$DOCKER_LOG"
case "$*" in
  ps\\ *|compose\\ *\\ ps\\ *) [ -n "$DOCKER_IDS" ] && printf '%s\\n' $DOCKER_IDS ;;
esac
exit 0
"""


@pytest.fixture(scope="module")
def backup():
    sys.path.insert(0, str(ROTATION))
    try:
        spec = importlib.util.spec_from_file_location("selfhost_backup", FILES / "selfhost_backup.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROTATION))
    return module


@pytest.fixture
def docker(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", "%s:/usr/bin:/bin" % bin_dir)
    monkeypatch.setenv("DOCKER_LOG", str(log))
    monkeypatch.setenv("DOCKER_IDS", "")
    return log


def config(engine=None):
    cfg = {"app_name": "demo", "project_dir": "/opt/demo", "service": "postgres"}
    if engine:
        cfg["engine"] = engine
    return cfg


def test_on_a_swarm_pg_dump_runs_in_the_task_on_this_node(backup, docker, monkeypatch):
    monkeypatch.setenv("DOCKER_IDS", "c0ffee")
    cmd = backup.in_postgres(config("swarm"), backup.PG_DUMP, "--compress=0")
    assert cmd[:4] == ["docker", "exec", "-i", "c0ffee"]
    assert cmd[4:7] == ["sh", "-c", backup.PG_DUMP] and cmd[-1] == "--compress=0"
    asked = docker.read_text()
    assert "label=com.docker.swarm.service.name=demo_postgres" in asked and "status=running" in asked


def test_on_a_swarm_without_the_task_here_the_error_names_the_service(backup, docker):
    with pytest.raises(backup.BackupError, match="no task of the Swarm service demo_postgres runs on this node"):
        backup.in_postgres(config("swarm"), backup.PG_DUMP)


@pytest.mark.parametrize("engine", [None, "compose"])
def test_on_compose_pg_dump_runs_through_compose_exec(backup, docker, engine):
    cmd = backup.in_postgres(config(engine), backup.PG_DUMP)
    assert cmd[:7] == ["docker", "compose", "--project-directory", "/opt/demo", "exec", "-T", "postgres"]
    assert not docker.exists()  # nothing to look up


def test_the_verify_step_finds_the_compose_container_or_says_the_service_is_down(backup, docker, monkeypatch):
    with pytest.raises(backup.BackupError, match="'postgres' service of /opt/demo is not running"):
        backup.postgres_container(config("compose"))
    monkeypatch.setenv("DOCKER_IDS", "abc123 def456")
    assert backup.postgres_container(config("compose")) == "abc123"
    assert "compose --project-directory /opt/demo ps --quiet postgres" in docker.read_text()
