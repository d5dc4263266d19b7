"""Role selfhost.stack.docker, distro source, on a Debian 13 systemd test host."""

import json
import os
import subprocess
import time

import pytest

HOST = "selfhost-docker"
PROBE_IMAGE = "selfhost-registry:5000/selfhost/probe:1"
PROBE_NAME = "selfhost-probe"
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"  # journal MESSAGE_ID of systemd's "Started <unit>"
VAULTED_PASSWORD = "probe-S3cret-9f2c"


def converge(*args, check=False):
    """Run the scenario's converge.yml against the instance; return (stats, parsed json, raw output)."""
    cmd = [
        "ansible-playbook",
        "--inventory",
        os.environ["MOLECULE_INVENTORY_FILE"],
        os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"),
        *args,
    ]
    if check:
        cmd += ["--check", "--diff"]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    return result["stats"][HOST], result, proc.stdout


def task_name(task):
    """Task name without the "role : " prefix the json callback adds."""
    return task["task"]["name"].rsplit(" : ", 1)[-1]


def changed_tasks(result):
    return [
        task_name(task)
        for play in result["plays"]
        for task in play["tasks"]
        if task["hosts"].get(HOST, {}).get("changed")
    ]


def task_diffs(result, name):
    return [
        diff
        for play in result["plays"]
        for task in play["tasks"]
        if task_name(task) == name
        for diff in task["hosts"].get(HOST, {}).get("diff", [])
    ]


def journal_cursor(host):
    out = host.check_output("journalctl -n0 --show-cursor --quiet")
    return out.split("cursor: ", 1)[1].strip()


def docker_starts_since(host, cursor):
    out = host.check_output(
        f"journalctl --after-cursor '{cursor}' -o json UNIT=docker.service MESSAGE_ID={UNIT_STARTED}"
    )
    return len([line for line in out.splitlines() if line.strip()])


def main_pid(host):
    return host.check_output("systemctl show -p MainPID --value docker.service")


def test_service_active_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_compose_is_v2(host):
    out = host.check_output("docker compose version --short")
    assert out.lstrip("v").startswith("2."), out


def test_version_pinned(host):
    pref = host.file("/etc/apt/preferences.d/docker-engine.pref")
    assert pref.exists
    assert "Pin: version 26.1.5*" in pref.content_string
    assert host.package("docker.io").version.startswith("26.1.5")
    policy = host.check_output("apt-cache policy docker.io")
    assert "1001" in policy


def test_daemon_json_rotation_and_live_restore(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["log-driver"] == "local"
    assert config["log-opts"] == {"max-size": "10m", "max-file": "5"}
    assert config["live-restore"] is True
    assert config["insecure-registries"] == ["selfhost-registry:5000"]


def test_daemon_runs_the_configuration(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "local"
    assert info["LiveRestoreEnabled"] is True
    assert "http://selfhost-registry:5000/" in info["RegistryConfig"]["Mirrors"]
    assert "selfhost-registry:5000" in info["RegistryConfig"]["IndexConfigs"]
    assert info["RegistryConfig"]["IndexConfigs"]["selfhost-registry:5000"]["Secure"] is False


def test_deploy_user_can_use_docker(host):
    assert "docker" in host.user("deploy").groups
    host.check_output("runuser -u deploy -- docker info --format '{{.ServerVersion}}'")


def test_registry_login_stored(host):
    auths = json.loads(host.file("/root/.docker/config.json").content_string)["auths"]
    assert "selfhost-registry:5000" in auths


def test_container_from_local_registry_with_limits(host):
    host.run(f"docker rm -f {PROBE_NAME}")
    try:
        host.check_output(
            f"docker run -d --name {PROBE_NAME} -m 64m -p 8080:8000 {PROBE_IMAGE} "
            "python3 -m http.server 8000"
        )
        assert host.check_output(f"docker inspect -f '{{{{.HostConfig.Memory}}}}' {PROBE_NAME}") == str(64 * 1024 * 1024)
        for _ in range(30):
            if host.run("curl -fsS -o /dev/null http://127.0.0.1:8080/").rc == 0:
                break
            time.sleep(1)
        else:
            pytest.fail("the probe container did not answer on 127.0.0.1:8080")
    finally:
        host.run(f"docker rm -f {PROBE_NAME}")


def test_check_mode_rerun_reports_no_change(host):
    stats, result, raw = converge(check=True)
    assert stats["failures"] == 0
    assert stats["changed"] == 0, changed_tasks(result)
    assert VAULTED_PASSWORD not in raw


def test_changed_option_restarts_docker_exactly_once(host):
    labels = '{"selfhost_docker_labels": ["selfhost.restart-probe=1"]}'
    try:
        cursor, pid = journal_cursor(host), main_pid(host)
        _, result, _ = converge("--diff", "--extra-vars", labels)
        assert "Write daemon.json" in changed_tasks(result)
        diffs = task_diffs(result, "Write daemon.json")
        assert any("selfhost.restart-probe=1" in d.get("after", "") for d in diffs), diffs
        assert docker_starts_since(host, cursor) == 1
        assert main_pid(host) != pid
        assert "selfhost.restart-probe=1" in host.check_output("docker info --format '{{json .Labels}}'")

        cursor, pid = journal_cursor(host), main_pid(host)
        stats, result, _ = converge("--extra-vars", labels)
        assert stats["changed"] == 0, changed_tasks(result)
        assert docker_starts_since(host, cursor) == 0
        assert main_pid(host) == pid
    finally:
        # Back to the converged configuration, so the verify step can run again.
        converge()


def test_quick_successive_changes_each_restart_docker(host):
    # Four configuration changes within a minute: more starts than docker.service's StartLimitBurst (3).
    cursor = journal_cursor(host)
    try:
        for probe in range(1, 4):
            converge("--extra-vars", f'{{"selfhost_docker_labels": ["selfhost.quick-change={probe}"]}}')
            assert f"selfhost.quick-change={probe}" in host.check_output("docker info --format '{{json .Labels}}'")
    finally:
        converge()
    assert docker_starts_since(host, cursor) == 4
    assert host.service("docker").is_running
