# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: status_table
short_description: One row per host of the fleet from the results of selfhost.stack.app_status
version_added: 0.1.0
description:
  - Given, per inventory host, the registered result of M(selfhost.stack.app_status) (or nothing
    when the play never ran it there), returns one row per host, in the order given.
  - A host that did not answer is a row that says C(unreachable) with the reason; a host the module
    failed on says C(error). A host without the app is C(no app).
  - O(format=rows) returns the rows as dicts (for C(-e status_format=json)); O(format=table) returns
    the lines of a text table with a header.
author: selfhost.stack developers
positional: _input
options:
  _input:
    description: Per host name, the registered result of M(selfhost.stack.app_status), or V(null).
    type: dict
    required: true
  now:
    description: The epoch the ages and the days left are counted from.
    type: int
    required: true
  format:
    description: V(table) for text lines, V(rows) for dicts.
    type: str
    choices: [table, rows]
    default: table
"""

EXAMPLES = r"""
- name: Show the fleet's status
  ansible.builtin.debug:
    msg: "{{ results | selfhost.stack.status_table(now=now().timestamp() | int) }}"
"""

RETURN = r"""
_value:
  description:
    - O(format=rows), one dict per host with C(host), C(state) (C(ok), C(degraded), C(no app),
      C(unreachable), C(error)), C(engine), C(release), C(version), C(services) (per service
      C(running/containers) and the versions that run), C(uptime), C(last_backup),
      C(certificate_days_left), C(disk_free_gib), C(disk_free_pct) and C(reason).
    - O(format=table), the lines of the table.
  type: list
"""

COLUMNS = (("host", "HOST"), ("state", "STATE"), ("engine", "ENGINE"), ("release", "RELEASE"),
           ("services_text", "SERVICES"), ("uptime", "UPTIME"), ("last_backup", "LAST BACKUP"),
           ("certificate", "CERTIFICATE"), ("disk", "FREE DISK"))


def duration(seconds):
    """A short age: 45s, 12m, 5h, 3d."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def row_of(host, result, now):
    row = {"host": host, "state": "ok", "engine": None, "release": None, "version": None, "services": {},
           "uptime": None, "last_backup": None, "certificate_days_left": None, "disk_free_gib": None,
           "disk_free_pct": None, "reason": ""}
    if not result:
        return dict(row, state="not reached", reason="the play did not reach it")
    if result.get("unreachable"):
        return dict(row, state="unreachable", reason=str(result.get("msg", "")).strip()[:200])
    if result.get("failed"):
        # A connection that ran no module (docker exec into a stopped container) says why on stderr.
        reason = (str(result.get("module_stderr") or "").strip().splitlines() or [str(result.get("msg", "")).strip()])[0]
        return dict(row, state="error", reason=reason[:200])
    services = result.get("services")
    row.update(engine=result.get("engine"), release=result.get("release"), version=result.get("version"),
               services=services or {}, uptime=result.get("uptime_s"))
    backup = result.get("backup")
    if backup:
        row["last_backup"] = {"age_s": now - backup["last_success"] if backup.get("last_success") else None,
                              "ok": bool(backup.get("ok"))}
    if result.get("certificate_expires"):
        row["certificate_days_left"] = int((result["certificate_expires"] - now) // 86400)
    if result.get("disk_free_bytes") is not None:
        row["disk_free_gib"] = round(result["disk_free_bytes"] / 2.0 ** 30, 1)
        row["disk_free_pct"] = result.get("disk_free_pct")
    if services is None:
        row.update(state="error", reason="Docker did not answer")
    elif not services and not row["release"]:
        row["state"] = "no app"
    elif any(s["serving"] < s["containers"] for s in services.values()):
        row["state"] = "degraded"
        row["reason"] = ", ".join(sorted(n for n, s in services.items() if s["serving"] < s["containers"])) + " not serving"
    return row


def text_of(row):
    services = ", ".join("%s %d/%d %s" % (name, s["serving"], s["containers"], "+".join(s["versions"]) or "-")
                         for name, s in sorted(row["services"].items()))
    backup = row["last_backup"]
    return {
        "host": row["host"],
        "state": row["state"] + (" (%s)" % row["reason"] if row["reason"] else ""),
        "engine": row["engine"] or "-",
        "release": row["release"] or "-",
        "services_text": services or "-",
        "uptime": duration(row["uptime"]),
        "last_backup": "-" if not backup else ("none yet" if backup["age_s"] is None else
                                               duration(backup["age_s"]) + " ago") + ("" if backup["ok"] else ", last failed"),
        "certificate": "-" if row["certificate_days_left"] is None else "%d days" % row["certificate_days_left"],
        "disk": "-" if row["disk_free_gib"] is None else "%.1f GiB (%s%%)" % (row["disk_free_gib"], row["disk_free_pct"]),
    }


def status_table(results, now, format="table"):  # pylint: disable=redefined-builtin
    rows = [row_of(host, result, int(now)) for host, result in results.items()]
    if format == "rows":
        return rows
    cells = [dict((key, title) for key, title in COLUMNS)] + [text_of(row) for row in rows]
    widths = dict((key, max(len(c[key]) for c in cells)) for key, _title in COLUMNS)
    return ["  ".join(c[key].ljust(widths[key]) for key, _title in COLUMNS).rstrip() for c in cells]


class FilterModule:
    """The fleet's status table."""

    def filters(self):
        return {"status_table": status_table}
