"""Scheduled backups on a real host: what a user would check, in file order (state carries over).

Converge was playbooks/deploy.yml with backup_enabled: true (inventory/group_vars/all/main.yml has
the retention policy: keep_last 2, keep_daily 3, keep_weekly 3, keep_monthly 3).
"""

import json
import time
import uuid

from conftest import (
    APP_DIR, BACKUP_DIR, STATUS_FILE, UNIT, api, backup_files, backups, compose, items, psql, recap,
    run_playbook, start_backup_service, status, wait_healthy,
)


def new_names(host, count=3, prefix="item"):
    names = [f"{prefix}-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for name in names:
        assert api(host, "POST", "/api/items", {"name": name})[0] == 201
    return names


def backend_started_at(host):
    return host.check_output("docker inspect -f '{{.State.StartedAt}}' demo-backend-1")


def unit_files(host):
    return {path: host.file(path).sha256sum for path in (
        f"/etc/systemd/system/{UNIT}.service", f"/etc/systemd/system/{UNIT}.timer", "/etc/selfhost-backup/demo.json")}


def test_timer_is_enabled_with_the_configured_schedule(host):
    timer = host.service(f"{UNIT}.timer")
    assert timer.is_enabled and timer.is_running
    show = host.check_output("systemctl show %s.timer -p TimersCalendar -p Persistent -p RandomizedDelayUSec", UNIT)
    assert "OnCalendar=*-*-* 03:15:00" in show
    assert "Persistent=yes" in show
    assert "RandomizedDelayUSec=10min" in show
    unit = host.file(f"/etc/systemd/system/{UNIT}.service").content_string
    assert "Type=oneshot" in unit and "selfhost_backup.py demo run" in unit


def test_backup_directory_is_root_only(host):
    directory = host.file(BACKUP_DIR)
    assert directory.is_directory and directory.user == "root" and directory.mode == 0o700


def test_service_run_writes_dump_checksum_and_status(host):
    names = new_names(host)
    before = set(backups(host))
    started = time.time()
    result = start_backup_service(host)
    assert result.rc == 0, result.stderr
    new = sorted(set(backups(host)) - before)
    assert len(new) == 1, new
    name = new[0]
    dump = host.file(f"{BACKUP_DIR}/{name}")
    assert dump.user == "root" and dump.mode == 0o600 and dump.size > 0
    assert host.run("cd %s && sha256sum --check --strict %s.sha256", BACKUP_DIR, name).rc == 0
    assert not [n for n in backup_files(host) if n.endswith(".partial")]
    # The dump is a custom-format archive holding the rows just written through the API.
    listing = host.check_output("docker compose --project-directory %s exec -T postgres pg_restore --list < %s/%s",
                                APP_DIR, BACKUP_DIR, name)
    assert "TABLE DATA public items" in listing
    data = host.check_output("docker compose --project-directory %s exec -T postgres pg_restore --data-only -f - < %s/%s",
                             APP_DIR, BACKUP_DIR, name)
    assert all(n in data for n in names)
    # node_exporter textfile status.
    values = status(host)
    assert values["last_result"] == 1
    assert started - 5 <= values["last_attempt_timestamp_seconds"] <= values["last_success_timestamp_seconds"] <= time.time() + 5
    assert values["last_size_bytes"] == dump.size
    assert 0 < values["last_duration_seconds"] < 120
    assert values["files"] == len(backups(host))
    status_file = host.file(STATUS_FILE)
    assert status_file.mode == 0o644
    assert "# TYPE selfhost_backup_last_success_timestamp_seconds gauge" in status_file.content_string
    assert not [n for n in host.check_output("ls -A %s", STATUS_FILE.rsplit("/", 1)[0]).split() if n.endswith(".tmp")]
    journal = host.check_output("journalctl -u %s.service -o cat --no-pager", UNIT)
    assert f"backup {name} complete" in journal


def test_backup_playbook_runs_the_service_and_verifies_the_backup(host):
    invocation = host.check_output("systemctl show -p InvocationID --value %s.service", UNIT)
    before = set(backups(host))
    result = run_playbook("backup.yml", "-e", "backup_verify=true")
    assert result.returncode == 0, result.output[-3000:]
    assert recap(result.output)["failed"] == 0
    # Same code path as the timer: a new run of the unit, not a separate command.
    assert host.check_output("systemctl show -p InvocationID --value %s.service", UNIT) != invocation
    new = sorted(set(backups(host)) - before)
    assert len(new) == 1 and new[0] in result.output
    # Then restored into a throwaway container: every table's row count matches the live database.
    assert "restores with every table's row count equal to the live database" in result.output
    assert "public.items" in result.output
    assert host.run("docker ps -a --filter name=demo-backup-verify -q").stdout.strip() == ""


def test_verify_reports_rows_an_older_backup_lacks(host):
    # The comparison can fail: the backup just verified lacks a row written since.
    older = backups(host)[0]
    live_rows = len(items(host))
    new_names(host, 1, prefix="after-verify")
    result = run_playbook("backup.yml", "-e", "backup_verify=true", "-e", f"backup_verify_file={older}")
    assert result.returncode != 0
    assert f"public.items: {live_rows} rows in the backup, {live_rows + 1} live" in result.output, result.output[-3000:]
    assert host.run("docker ps -a --filter name=demo-backup-verify -q").stdout.strip() == ""


FAKES = {
    # name time: kept by the policy (keep_last 2, daily 3, weekly 3, monthly 3) next to the new backup?
    "20250315T100000Z": True,   # the second newest: last, daily, weekly (W11), monthly (March)
    "20250315T040000Z": False,  # same day, older
    "20250314T040000Z": True,   # third day
    "20250313T040000Z": False,
    "20250309T040000Z": True,   # newest of ISO week 10
    "20250303T040000Z": False,
    "20250220T040000Z": True,   # newest of February
    "20250131T040000Z": False,  # January is the fourth month
    "20250110T040000Z": False,
    "20241231T040000Z": False,
}


def test_rotation_keeps_exactly_the_policy(host):
    # Start from the real newest dump, copied under dated names, each with its checksum file.
    source = backups(host)[0]
    host.check_output("mkdir -p /root/rotation && cp %s/%s /root/rotation/source.dump", BACKUP_DIR, source)
    host.check_output("rm -f %s/demo-*", BACKUP_DIR)
    for stamp in FAKES:
        name = f"demo-{stamp}.dump"
        host.check_output("cp /root/rotation/source.dump %s/%s && cd %s && sha256sum %s > %s.sha256",
                          BACKUP_DIR, name, BACKUP_DIR, name, name)
    # Files that are not this app's backups, a leftover of an interrupted run, an orphan checksum.
    for other in ("notes.txt", "shop-20250101T000000Z.dump", ".demo-20250101T000000Z.dump.partial",
                  "demo-20240101T000000Z.dump.sha256"):
        host.check_output("touch %s/%s", BACKUP_DIR, other)

    result = start_backup_service(host)
    assert result.rc == 0, result.stderr
    new = [n for n in backups(host) if n[5:21] not in FAKES]
    assert len(new) == 1
    kept = [f"demo-{stamp}.dump" for stamp, keep in FAKES.items() if keep]
    expected = sorted(
        [".lock", "notes.txt", "shop-20250101T000000Z.dump"]
        + [f for name in new + kept for f in (name, name + ".sha256")]
    )
    assert backup_files(host) == expected
    journal = host.check_output("journalctl -u %s.service -o cat --no-pager -n 40", UNIT)
    assert "deleting demo-20241231T040000Z.dump (outside the retention policy)" in journal
    assert "keeping demo-20250309T040000Z.dump (weekly)" in journal
    assert "removing .demo-20250101T000000Z.dump.partial" in journal


def test_restore_brings_back_exactly_the_rows(host):
    new_names(host)
    result = run_playbook("backup.yml")
    assert result.returncode == 0, result.output[-3000:]
    taken = backups(host)[0]
    rows = items(host)
    assert len(rows) >= 6
    # Lose data: two rows deleted behind the application's back, one written after the backup.
    psql(host, "DELETE FROM items WHERE id IN (%d, %d)" % (rows[0][0], rows[-1][0]))
    assert api(host, "POST", "/api/items", {"name": "written-after-the-backup"})[0] == 201
    assert items(host) != rows
    before = set(backups(host))
    started_at = backend_started_at(host)

    result = run_playbook("restore.yml")
    assert result.returncode == 0, result.output[-3000:]
    assert f"Restored {taken}" in result.output
    assert items(host) == rows
    # A safety backup of the state before the restore, and the backend was stopped and started.
    safety = sorted(set(backups(host)) - before)
    assert len(safety) == 1 and safety[0] > taken
    assert backend_started_at(host) != started_at
    wait_healthy(host)
    status_code, listed = api(host, "GET", "/api/items")
    assert status_code == 200 and [(i["id"], i["name"]) for i in listed["items"]] == rows


def test_restore_refuses_a_corrupt_backup_before_any_change(host):
    name = backups(host)[0]
    rows = items(host)
    started_at = backend_started_at(host)
    before = backup_files(host)
    host.check_output("printf x >> %s/%s", BACKUP_DIR, name)  # bit rot
    try:
        result = run_playbook("restore.yml", "-e", f"backup_restore_file={name}")
    finally:
        host.check_output("truncate -s -1 %s/%s", BACKUP_DIR, name)
    assert result.returncode != 0
    assert "checksum mismatch" in result.output, result.output[-3000:]
    assert items(host) == rows
    assert backend_started_at(host) == started_at
    assert backup_files(host) == before  # not even a safety backup


def test_restore_by_name_and_bad_names(host):
    older = backups(host)[0]
    new_names(host, 1, prefix="after-older")
    assert start_backup_service(host).rc == 0
    result = run_playbook("restore.yml", "-e", f"backup_restore_file={older}", "-e", "backup_restore_safety_backup=false")
    assert result.returncode == 0, result.output[-3000:]
    assert f"Restored {older}" in result.output
    rows_at_older = items(host)
    assert not [n for _, n in rows_at_older if n.startswith("after-older")]
    for bad, message in (("../../etc/passwd", "is not a backup of demo"),
                         ("demo-20200101T000000Z.dump", "there is no backup demo-20200101T000000Z.dump")):
        result = run_playbook("restore.yml", "-e", f"backup_restore_file={bad}")
        assert result.returncode != 0 and message in result.output, (bad, result.output[-3000:])
        assert recap(result.output)["changed"] == 0
    assert items(host) == rows_at_older


def test_check_diff_shows_the_change_and_previews_pruning(host):
    files = unit_files(host)
    present = backups(host)
    result = run_playbook("deploy.yml", "--check", "--diff", "-e", "backup_keep_last=1", "-e", "backup_keep_daily=1",
                          "-e", "backup_keep_weekly=1", "-e", "backup_keep_monthly=1")
    assert result.returncode == 0, result.output[-3000:]
    assert '-    "daily": 3,' in result.output and '+    "daily": 1,' in result.output
    preview = [line for line in result.output.splitlines() if "the next backup deletes" in line]
    assert len(preview) == 1, result.output[-3000:]
    assert all(name in preview[0] for name in present[1:]) and present[0] not in preview[0]
    assert unit_files(host) == files
    assert backups(host) == present


def test_bad_input_stops_before_any_change(host):
    files = unit_files(host)
    present = backup_files(host)
    cases = {
        "backup_keep_daily must be an integer >= 0, got '-1'": {"backup_keep_daily": -1},
        "backup_schedule 'every tuesday at noon' is not a calendar expression systemd accepts": {
            "backup_schedule": "every tuesday at noon"},
        "backup_randomized_delay is not a time span systemd accepts": {"backup_randomized_delay": "ten minutes"},
        "backup_encryption is age but backup_age_recipients is empty": {"backup_encryption": "age"},
        "backup_remote_ssh_key /root/.ssh/missing does not exist": {
            "backup_remote_target": "offsite@127.0.0.1:/srv/offsite/demo/", "backup_remote_ssh_key": "/root/.ssh/missing"},
    }
    for message, extra in cases.items():
        result = run_playbook("deploy.yml", "-e", json.dumps(extra))
        assert result.returncode != 0, message
        assert message in " ".join(result.output.split()), (message, result.output[-3000:])
        assert recap(result.output)["changed"] == 0, message
        assert "Install Docker Engine and Compose" not in result.output, message
    assert unit_files(host) == files
    assert backup_files(host) == present


def test_failed_backup_is_loud_and_prunes_nothing(host):
    before_files = backup_files(host)
    before_status = status(host)
    assert before_status["last_result"] == 1
    assert compose(host, "stop", "postgres").rc == 0
    try:
        result = start_backup_service(host)
        assert result.rc != 0
        assert host.run("systemctl is-failed %s.service", UNIT).stdout.strip() == "failed"
        invocation = host.check_output("systemctl show -p InvocationID --value %s.service", UNIT)
        journal = host.check_output("journalctl _SYSTEMD_INVOCATION_ID=%s -o cat --no-pager", invocation)
        assert 'service "postgres" is not running' in journal
        assert "backup of demo FAILED: pg_dump in service 'postgres'" in journal
        errors = host.check_output("journalctl _SYSTEMD_INVOCATION_ID=%s -p err -o cat --no-pager", invocation)
        assert "FAILED" in errors
        # Nothing pruned, no partial file, and the status says failure while keeping the last success.
        assert backup_files(host) == before_files
        after = status(host)
        assert after["last_result"] == 0
        assert after["last_success_timestamp_seconds"] == before_status["last_success_timestamp_seconds"]
        assert after["last_size_bytes"] == before_status["last_size_bytes"]
        assert after["last_attempt_timestamp_seconds"] > before_status["last_attempt_timestamp_seconds"]
        # The on-demand playbook fails too, and shows why.
        result = run_playbook("backup.yml")
        assert result.returncode != 0
        assert 'service \\"postgres\\" is not running' in result.output or 'service "postgres" is not running' in result.output
        assert backup_files(host) == before_files
    finally:
        assert compose(host, "start", "postgres").rc == 0
        host.run("systemctl reset-failed %s.service", UNIT)
    wait_healthy(host)
    assert start_backup_service(host).rc == 0
    assert status(host)["last_result"] == 1


def test_encrypted_backups_copied_offsite_and_restored(host, secrets):
    extra = json.dumps({
        "backup_encryption": "age",
        "backup_age_recipients": ["{{ backup_test_age_recipient }}"],
        "backup_remote_target": "offsite@127.0.0.1:/srv/offsite/demo/",
        "backup_remote_ssh_key": "/root/.ssh/backup_offsite",
    })
    result = run_playbook("deploy.yml", "-e", extra)
    assert result.returncode == 0, result.output[-3000:]
    assert host.package("age").is_installed and host.package("rsync").is_installed
    new_names(host, 2, prefix="encrypted")
    rows = items(host)
    assert start_backup_service(host).rc == 0
    name = backups(host)[0]
    assert name.endswith(".dump.age")
    assert host.check_output("head -c 21 %s/%s", BACKUP_DIR, name) == "age-encryption.org/v1"
    # The copy on the other host: complete, same checksum, owned by the receiving account.
    local = host.file(f"{BACKUP_DIR}/{name}").sha256sum
    remote = host.file(f"/srv/offsite/demo/{name}")
    assert remote.exists and remote.sha256sum == local and remote.user == "offsite"
    assert host.run("cd /srv/offsite/demo && sha256sum --check %s.sha256", name).rc == 0
    # Restore needs the identity (from Vault): the rows come back, the secret never shows.
    psql(host, "DELETE FROM items")
    result = run_playbook("restore.yml", "-e", extra)
    assert result.returncode == 0, result.output[-3000:]
    assert f"Restored {name}" in result.output
    assert items(host) == rows
    for value in secrets:
        assert value not in result.output
    assert host.run("ls /tmp/selfhost-backup-identity.* 2>/dev/null").stdout.strip() == ""
