"""The harness boots a real systemd host that Ansible and testinfra can both reach."""

ALLOWED_FAILED_UNITS = {"systemd-modules-load.service"}


def test_systemd_is_pid_1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_boot_finished_without_unexpected_failures(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded")
    failed = host.run("systemctl list-units --failed --plain --no-legend --no-pager")
    units = {line.split()[0] for line in failed.stdout.splitlines() if line.strip()}
    assert units <= ALLOWED_FAILED_UNITS, f"unexpected failed units: {units}"


def test_debian_13_with_python(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("13")
    assert host.exists("python3")


def test_converge_left_its_marker(host):
    marker = host.file("/etc/selfhost-harness")
    assert marker.exists
    assert marker.user == "root"
    assert oct(marker.mode) == "0o644"
    assert marker.content_string.startswith("converged by selfhost-harness")


def test_journald_and_dbus_run(host):
    assert host.service("systemd-journald").is_running
    assert host.service("dbus").is_running
