"""The fleet's status table (playbooks/status.yml) from each host's app_status result."""

from ansible_collections.selfhost.stack.plugins.filter.status_table import FilterModule, status_table

NOW = 1796700000
UP = {"engine": "compose", "release": "20261207T101500Z-v2", "version": "v2", "uptime_s": 7200,
      "services": {"backend": {"containers": 2, "running": 2, "serving": 2, "versions": ["v2"]},
                   "nginx": {"containers": 1, "running": 1, "serving": 1, "versions": ["1.26"]}},
      "backup": {"last_success": NOW - 3 * 3600, "ok": True}, "certificate_expires": NOW + 89 * 86400 + 5,
      "disk_free_bytes": 12 * 2 ** 30, "disk_free_pct": 45.5}


def test_every_host_is_a_row_in_inventory_order_whatever_happened_to_it():
    degraded = dict(UP, services={"backend": {"containers": 2, "running": 1, "serving": 1, "versions": ["v2"]}})
    results = {"app1": UP, "app2": {"unreachable": True, "msg": "Failed to connect to the host via docker"},
               "app3": degraded, "db": {"failed": True, "msg": "boom"}, "lb": dict(UP, services={}, release=None),
               "new": None, "stopped": {"failed": True, "msg": "Module result deserialization failed: No start of json",
                                         "module_stderr": "Error response from daemon: Container 0f1e is not running\n"}}
    rows = status_table(results, NOW, format="rows")
    assert [(r["host"], r["state"]) for r in rows] == [
        ("app1", "ok"), ("app2", "unreachable"), ("app3", "degraded"), ("db", "error"), ("lb", "no app"),
        ("new", "not reached"), ("stopped", "error")]
    assert rows[0]["certificate_days_left"] == 89 and rows[0]["disk_free_gib"] == 12.0
    assert rows[0]["last_backup"] == {"age_s": 3 * 3600, "ok": True}
    assert rows[1]["reason"] == "Failed to connect to the host via docker"
    assert rows[2]["reason"] == "backend not serving"
    assert rows[6]["reason"] == "Error response from daemon: Container 0f1e is not running"


def test_the_table_has_a_header_and_aligned_columns():
    lines = status_table({"app1": UP, "app2": {"unreachable": True, "msg": "no route"}}, NOW)
    assert lines[0].split() == ["HOST", "STATE", "ENGINE", "RELEASE", "SERVICES", "UPTIME", "LAST", "BACKUP",
                                "CERTIFICATE", "FREE", "DISK"]
    assert lines[1].startswith("app1  ok ")
    assert "backend 2/2 v2, nginx 1/1 1.26" in lines[1] and "2h" in lines[1] and "3h ago" in lines[1]
    assert "89 days" in lines[1] and "12.0 GiB (45.5%)" in lines[1]
    assert lines[2].startswith("app2  unreachable (no route)")
    engine_column = lines[0].index("ENGINE")
    assert lines[1][engine_column:].startswith("compose") and lines[2][engine_column:].startswith("-")


def test_a_failed_backup_and_none_yet():
    rows = status_table({"a": dict(UP, backup={"last_success": None, "ok": False})}, NOW)
    assert "none yet, last failed" in rows[1]


def test_the_filter_is_registered():
    assert FilterModule().filters()["status_table"] is status_table
