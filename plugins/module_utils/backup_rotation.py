# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which database backups to keep: the newest N plus daily, weekly and monthly ones (GFS).

Pure logic with no Ansible imports: the same file is the ``selfhost.stack.backup_prune``
filter's engine on the controller and is installed next to the backup script on the host.

A backup is named ``<prefix>-<YYYYmmddTHHMMSSZ>.dump`` (``.dump.age`` when encrypted); the
UTC timestamp in the name is the time it was taken. Periods are UTC calendar days, ISO weeks
and calendar months. For each period kind with a count C, the newest backup of each of the C
most recent periods that hold a backup is kept. The newest backup and the newest verified
backup are always kept, whatever the counts say.
"""

from __future__ import annotations

import datetime
import re

NAME_PATTERN = re.compile(
    r"^(?P<prefix>[A-Za-z0-9][A-Za-z0-9._-]*)-(?P<stamp>[0-9]{8}T[0-9]{6}Z)\.dump(?P<encrypted>\.age)?$"
)
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
POLICY_KEYS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")


class RotationError(ValueError):
    """Invalid policy or backup list."""


def backup_name(prefix, when, encrypted=False):
    """File name of a backup of ``prefix`` taken at ``when`` (an aware datetime)."""
    stamp = when.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT)
    return "%s-%s.dump%s" % (prefix, stamp, ".age" if encrypted else "")


def parse_name(name, prefix=None):
    """(prefix, UTC timestamp, encrypted) of a backup file name or path, None if it is not one.

    With ``prefix``, names of other prefixes are not backups either.
    """
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    match = NAME_PATTERN.match(base)
    if not match or (prefix is not None and match.group("prefix") != prefix):
        return None
    try:
        when = datetime.datetime.strptime(match.group("stamp"), STAMP_FORMAT)
    except ValueError:
        return None
    return match.group("prefix"), when.replace(tzinfo=datetime.timezone.utc), bool(match.group("encrypted"))


def check_policy(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0):
    """The policy as a dict; RotationError unless every count is an integer >= 0."""
    policy = {"keep_last": keep_last, "keep_daily": keep_daily, "keep_weekly": keep_weekly, "keep_monthly": keep_monthly}
    for key in POLICY_KEYS:
        value = policy[key]
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.match(r"^[0-9]+$", value.strip()):
                policy[key] = int(value)
                continue
            raise RotationError("%s must be an integer >= 0, got %r" % (key, value))
        if value < 0:
            raise RotationError("%s must be an integer >= 0, got %d" % (key, value))
    return policy


def _period(kind, when):
    if kind == "daily":
        return when.date()
    if kind == "weekly":
        iso = when.isocalendar()
        return (iso[0], iso[1])
    return (when.year, when.month)


def plan(backups, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0):
    """Split backups into the ones to keep and the ones to delete.

    ``backups``: iterable of (name, verified) pairs, or of plain names (then verified).
    Names that are not backup names are ignored: never kept, never deleted.
    Returns a dict: ``keep`` and ``delete`` (names, newest first) and ``reasons``
    (name -> list of why it is kept: last, daily, weekly, monthly, newest, newest-verified).
    """
    policy = check_policy(keep_last, keep_daily, keep_weekly, keep_monthly)
    entries = []
    seen = set()
    for item in backups:
        name, verified = (item, True) if isinstance(item, str) else (item[0], bool(item[1]))
        parsed = parse_name(name)
        if parsed is None:
            continue
        if name in seen:
            raise RotationError("backup %s is listed twice" % name)
        seen.add(name)
        entries.append((parsed[1], name, verified))
    # Newest first; the name breaks ties between backups of the same second.
    entries.sort(key=lambda e: (e[0], e[1]), reverse=True)

    reasons = {}

    def mark(name, reason):
        reasons.setdefault(name, []).append(reason)

    for when, name, verified in entries[:policy["keep_last"]]:
        mark(name, "last")
    for kind in ("daily", "weekly", "monthly"):
        count = policy["keep_" + kind]
        periods = []
        for when, name, verified in entries:
            if len(periods) >= count:
                break
            period = _period(kind, when)
            if period not in periods:
                periods.append(period)
                mark(name, kind)
    if entries:
        mark(entries[0][1], "newest")
        newest_verified = [name for when, name, verified in entries if verified]
        if newest_verified:
            mark(newest_verified[0], "newest-verified")

    keep = [name for when, name, verified in entries if name in reasons]
    delete = [name for when, name, verified in entries if name not in reasons]
    return {"keep": keep, "delete": delete, "reasons": reasons}
