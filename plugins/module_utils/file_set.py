# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Several small files brought to their content, owner, group and mode in one pass (the module
selfhost.stack.file_set): one module call on the host instead of a copy loop."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import tempfile


class FileSetError(Exception):
    """A file that cannot be brought to its state; the message names the file."""


def parse_mode(mode):
    """An octal mode given as text ('0640', '640') as an int."""
    text = str(mode).strip()
    if not text or len(text) > 4 or any(c not in "01234567" for c in text):
        raise FileSetError("mode %r is not an octal mode such as '0640'" % (mode,))
    return int(text, 8)


def resolve_id(value, kind):
    """A user (kind 'owner') or group name, or a numeric id, as the numeric id."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid if kind == "owner" else grp.getgrnam(text).gr_gid
    except KeyError:
        raise FileSetError("%s %r does not exist on this host" % (kind, text))


def read_current(path):
    """(content, uid, gid, mode) of the regular file at path, or None when there is none."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise FileSetError("%s exists and is not a regular file" % path)
    with open(path, "rb") as handle:
        return handle.read(), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def write_atomically(path, content, uid, gid, mode):
    """Writes a temporary file beside path with its owner, group and mode, then renames it over
    path: a reader sees the old file or the new one, never half a file or a wrong mode."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


class FileSet(object):
    """Compares each wanted file with the one on disk and, unless check_mode, changes what differs:
    a new or changed content is written atomically; a right content with a wrong owner, group or
    mode is changed in place."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode

    def apply(self, spec):
        """One file: {path, changed, changes, before, after}; changes among content, owner, group
        and mode (all four for a new file); before/after are the texts, for a diff."""
        path = spec["path"]
        if not os.path.isabs(path):
            raise FileSetError("%s is not an absolute path" % path)
        content = spec["content"].encode("utf-8")
        uid, gid = resolve_id(spec["owner"], "owner"), resolve_id(spec["group"], "group")
        mode = parse_mode(spec["mode"])
        if os.path.isdir(os.path.dirname(path)):
            current = read_current(path)
        elif self.check_mode:  # the task that creates the directory did not either: a new file
            current = None
        else:
            raise FileSetError("the directory of %s does not exist" % path)
        if current is None:
            changes = ["content", "owner", "group", "mode"]
        else:
            changes = [name for name, now, wanted in (
                ("content", current[0], content), ("owner", current[1], uid),
                ("group", current[2], gid), ("mode", current[3], mode)) if now != wanted]
        if changes and not self.check_mode:
            if "content" in changes:
                write_atomically(path, content, uid, gid, mode)
            else:
                os.chown(path, uid, gid)
                os.chmod(path, mode)
        return {
            "path": path, "changed": bool(changes), "changes": changes,
            "before": "" if current is None else current[0].decode("utf-8", "replace"),
            "after": spec["content"],
        }

    def run(self, specs):
        """Every file, in order: (changed, results). The first file that fails stops the rest."""
        results = [self.apply(spec) for spec in specs]
        return any(r["changed"] for r in results), results
