"""Role selfhost.stack.docker, distro source, on a Debian 13 systemd test host."""

import json
import os
import subprocess
import time
import urllib.request

import pytest

HOST = "selfhost-docker"
PROBE_IMAGE = "selfhost-registry:5000/selfhost/probe:1"
PROBE_NAME = "selfhost-probe"
PROBE_NET = "selfhost-probe-net"  # a user-defined network, as Compose projects get
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


def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def remove_probes(host):
    host.run(f"docker rm -f {PROBE_NAME} {PROBE_NAME}-client")
    host.run(f"docker network rm {PROBE_NET}")


def start_web_probe(host, *docker_args):
    """A probe container serving HTTP on port 8000; returns its address on the default bridge once it answers."""
    host.check_output(f"docker run -d --name {PROBE_NAME} {' '.join(docker_args)} {PROBE_IMAGE} python3 -m http.server 8000")
    address = host.check_output(f"docker inspect -f '{{{{.NetworkSettings.IPAddress}}}}' {PROBE_NAME}")
    for _ in range(30):
        if host.run(f"curl -fsS -o /dev/null --max-time 2 http://{address}:8000/").rc == 0:
            return address
        time.sleep(1)
    pytest.fail(f"the probe container did not answer on {address}:8000 from the test host")


def process_names(host):
    return host.check_output("cat /proc/[0-9]*/comm 2>/dev/null || true").split()


def started_at(host, name):
    return host.check_output(f"docker inspect -f '{{{{.State.StartedAt}}}}' {name}")


def run_in_probe(host, command, *docker_args):
    """A one-off probe container's command (default bridge unless docker_args say otherwise)."""
    return host.run(f"docker run --rm --name {PROBE_NAME}-client {' '.join(docker_args)} {PROBE_IMAGE} sh -c '{command}'")


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


def test_daemon_json_hardening(host):
    # The role's defaults: converge.yml sets none of these.
    config = daemon_json(host)
    assert config["no-new-privileges"] is True
    assert config["userland-proxy"] is False
    assert config["icc"] is False


def test_daemon_runs_the_configuration(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "local"
    assert info["LiveRestoreEnabled"] is True
    assert "name=no-new-privileges" in info["SecurityOptions"], info["SecurityOptions"]
    # docker info has neither icc nor userland-proxy: the default bridge's options show icc (the proxy:
    # test_published_port_answers_without_docker_proxy).
    bridge = json.loads(host.check_output("docker network inspect bridge --format '{{json .Options}}'"))
    assert bridge["com.docker.network.bridge.enable_icc"] == "false", bridge
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


def test_containers_run_without_new_privileges(host):
    # The kernel's flag on the container's first process, and what it is for: a setuid-root binary
    # run by an unprivileged user inside the container does not make it root.
    setuid_id = "cp /usr/bin/id /tmp/id && chmod u+s /tmp/id && grep NoNewPrivs /proc/1/status && setpriv --reuid 65534 --regid 65534 --clear-groups /tmp/id -u"
    hardened = run_in_probe(host, setuid_id)
    assert hardened.rc == 0, hardened.stderr
    assert hardened.stdout.split() == ["NoNewPrivs:", "1", "65534"], hardened.stdout
    # The same container with the flag turned off for it: the check tells the two apart.
    opted_out = run_in_probe(host, setuid_id, "--security-opt", "no-new-privileges=false")
    assert opted_out.rc == 0, opted_out.stderr
    assert opted_out.stdout.split() == ["NoNewPrivs:", "0", "0"], opted_out.stdout


def test_default_bridge_refuses_container_to_container_traffic(host):
    remove_probes(host)
    try:
        address = start_web_probe(host)  # answers the test host itself
        # Another container on the default bridge: dropped (curl's exit code 28 is a timeout).
        blocked = run_in_probe(host, f"curl -sS -o /dev/null --max-time 5 http://{address}:8000/")
        assert blocked.rc == 28, (blocked.rc, blocked.stderr)
        # The same two containers on a user-defined network (as Compose's): open, icc is the default bridge's.
        host.check_output(f"docker network create {PROBE_NET}")
        host.check_output(f"docker network connect {PROBE_NET} {PROBE_NAME}")
        allowed = run_in_probe(host, f"curl -fsS -o /dev/null --max-time 5 http://{PROBE_NAME}:8000/", "--network", PROBE_NET)
        assert allowed.rc == 0, (allowed.rc, allowed.stderr)
    finally:
        remove_probes(host)


def test_published_port_answers_without_docker_proxy(host):
    remove_probes(host)
    try:
        start_web_probe(host, "-p 8081:8000")
        # On the test host's loopback (iptables DNAT with route_localnet, no proxy process)...
        host.check_output("curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:8081/")
        # ...and from the test network, here from this machine to the test host's address.
        address = next(a for a in host.interface("eth0").addresses if ":" not in a)
        with urllib.request.urlopen(f"http://{address}:8081/", timeout=5) as response:
            assert response.status == 200
        # With the userland proxy, dockerd would run one docker-proxy per published port and address family.
        commands = process_names(host)
        assert "dockerd" in commands
        assert "docker-proxy" not in commands
    finally:
        remove_probes(host)


def test_upgrade_keeps_running_containers_and_their_ports(host):
    # A host the role configured before these defaults (Docker's own no-new-privileges, userland-proxy
    # and icc), with a container publishing a port, gets the new daemon.json: Docker restarts once.
    docker_defaults = '{"selfhost_docker_extra_options": {"no-new-privileges": null, "userland-proxy": null, "icc": null}}'
    remove_probes(host)
    converged = False
    try:
        converge("--extra-vars", docker_defaults)
        assert "userland-proxy" not in daemon_json(host)
        start_web_probe(host, "-p 8082:8000")
        assert "docker-proxy" in process_names(host)  # the control: the old way, a proxy process per port
        started = started_at(host, PROBE_NAME)

        converge()
        converged = True
        # live-restore: the container was not restarted, and its port now answers through iptables alone.
        assert started_at(host, PROBE_NAME) == started
        host.check_output("curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:8082/")
        assert "docker-proxy" not in process_names(host)
        # no_new_privs is set when a container starts: this one keeps running without it until recreated.
        assert host.check_output(f"docker exec {PROBE_NAME} grep NoNewPrivs /proc/1/status").split() == ["NoNewPrivs:", "0"]
    finally:
        remove_probes(host)
        if not converged:
            converge()


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
