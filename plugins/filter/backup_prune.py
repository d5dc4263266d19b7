# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: backup_prune
short_description: The database backups a retention policy deletes
version_added: 0.1.0
description:
  - Given backup file names (or paths) of the form C(<prefix>-<YYYYmmddTHHMMSSZ>.dump) or
    C(.dump.age), returns those that the retention policy deletes, newest first.
  - The policy keeps the newest O(keep_last) backups plus, grandfather-father-son style, the newest
    backup of each of the O(keep_daily) most recent UTC days, O(keep_weekly) most recent ISO weeks
    and O(keep_monthly) most recent months that hold a backup.
  - The newest backup and the newest verified backup are never deleted, whatever the counts say.
  - Pruning the kept set again deletes nothing. The same logic prunes on the host after every
    backup of the C(selfhost.stack.backup) role.
author: selfhost.stack developers
positional: _input
options:
  _input:
    description:
      - Backup file names or paths; or dicts with a C(path) or C(name) key (for example the
        C(files) of M(ansible.builtin.find)) and an optional boolean C(verified).
      - Entries whose name is not a backup name are ignored (never returned).
    type: list
    elements: raw
    required: true
  keep_last:
    description: How many of the newest backups to keep.
    type: int
    default: 3
  keep_daily:
    description: How many days to keep the newest backup of.
    type: int
    default: 7
  keep_weekly:
    description: How many ISO weeks to keep the newest backup of.
    type: int
    default: 4
  keep_monthly:
    description: How many months to keep the newest backup of.
    type: int
    default: 6
  verified:
    description:
      - Names or paths of the backups that passed verification (the role writes a C(.sha256)
        file only after C(pg_restore --list) accepted the dump).
      - When omitted, every entry without a C(verified) key counts as verified.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Find the backups on an off-site host
  ansible.builtin.find:
    paths: /srv/backups/shop
    patterns: ["shop-*.dump", "shop-*.dump.age"]
  register: offsite_backups

- name: Apply the same retention policy there
  ansible.builtin.file:
    path: "{{ item }}"
    state: absent
  loop: "{{ offsite_backups.files | map(attribute='path')
            | selfhost.stack.backup_prune(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=12) }}"

- name: Which backups would a policy of two daily ones delete
  ansible.builtin.debug:
    msg: >-
      {{ ['shop-20261120T020000Z.dump', 'shop-20261121T020000Z.dump', 'shop-20261122T020000Z.dump']
         | selfhost.stack.backup_prune(keep_last=0, keep_daily=2, keep_weekly=0, keep_monthly=0) }}
  # -> ['shop-20261120T020000Z.dump']

- name: Only backups with a checksum file count as verified
  ansible.builtin.debug:
    msg: "{{ names | selfhost.stack.backup_prune(keep_last=1, verified=checksummed) }}"
  vars:
    names: [shop-20261121T020000Z.dump, shop-20261122T020000Z.dump]
    checksummed: [shop-20261121T020000Z.dump]
  # -> [] : the newest is kept as the newest, the older one as the newest verified backup
"""

RETURN = r"""
_value:
  description: The entries to delete (as given, names or paths), newest first.
  type: list
  elements: str
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.selfhost.stack.plugins.module_utils.backup_rotation import (
    RotationError,
    plan,
)


def _entry(item, verified_set):
    if isinstance(item, Mapping):
        name = item.get("path", item.get("name"))
        if name is None:
            raise AnsibleFilterError("backup_prune: a dict entry needs a 'path' or 'name' key, got %r" % (dict(item),))
        name = to_text(name)
        if "verified" in item:
            return name, bool(item["verified"])
    elif isinstance(item, str):
        name = to_text(item)
    else:
        raise AnsibleFilterError("backup_prune: entries must be names, paths or dicts, got %r" % (item,))
    if verified_set is None:
        return name, True
    return name, name in verified_set or name.rsplit("/", 1)[-1] in verified_set


def backup_prune(backups, keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6, verified=None):
    """The entries of ``backups`` the policy deletes, newest first."""
    if isinstance(backups, (str, Mapping)) or not hasattr(backups, "__iter__"):
        raise AnsibleFilterError("backup_prune: the input must be a list of backup names, got %r" % (backups,))
    verified_set = None
    if verified is not None:
        if isinstance(verified, str):
            raise AnsibleFilterError("backup_prune: verified must be a list of names, got a string")
        verified_set = set(to_text(v) for v in verified)
        verified_set |= set(v.rsplit("/", 1)[-1] for v in verified_set)
    entries = [_entry(item, verified_set) for item in backups]
    try:
        result = plan(entries, keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly, keep_monthly=keep_monthly)
    except RotationError as exc:
        raise AnsibleFilterError("backup_prune: %s" % exc) from exc
    return result["delete"]


class FilterModule:
    """Backup retention filters."""

    def filters(self):
        return {"backup_prune": backup_prune}
