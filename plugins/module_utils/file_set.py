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
import shlex
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


def write_atomically(path, content, uid, gid, mode, check=None):
    """Writes a temporary file beside path with its owner, group and mode, then renames it over
    path: a reader sees the old file or the new one, never half a file or a wrong mode. check:
    called with the temporary file's path before the rename; it raises to keep the old file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


class FileSet(object):
    """Compares each wanted file with the one on disk and, unless check_mode, changes what differs:
    a new or changed content is written atomically; a right content with a wrong owner, group or
    mode is changed in place."""

    def __init__(self, check_mode=False, run=None):
        self.check_mode = check_mode
        # run_command(argv) -> (rc, stdout, stderr): how a file's `validate` command is run.
        self.run_command = run

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
                write_atomically(path, content, uid, gid, mode, self.validator(path, spec.get("validate")))
            else:
                os.chown(path, uid, gid)
                os.chmod(path, mode)
        return {
            "path": path, "changed": bool(changes), "changes": changes,
            "before": "" if current is None else current[0].decode("utf-8", "replace"),
            "after": spec["content"],
        }

    def validator(self, path, command):
        """The check of a new content before it replaces path: command (a shell-quoted command
        line with %s for the file) must exit 0; None without a command."""
        if not command:
            return None
        if "%s" not in command:
            raise FileSetError("validate of %s must contain %%s (the file to check): %r" % (path, command))

        def check(tmp):
            rc, out, err = self.run_command(shlex.split(command.replace("%s", shlex.quote(tmp))))
            if rc != 0:
                raise FileSetError("%s was not changed: its new content failed %s (rc %d): %s" % (
                    path, command, rc, (err or out).strip()[-1000:]))
        return check

    def remove(self, path):
        """A file that must not be there: {path, changed}."""
        if not os.path.isabs(path):
            raise FileSetError("%s is not an absolute path" % path)
        if os.path.isdir(path) and not os.path.islink(path):
            raise FileSetError("%s is a directory, not a file to remove" % path)
        there = os.path.lexists(path)
        if there and not self.check_mode:
            os.unlink(path)
        return {"path": path, "changed": there, "changes": ["absent"] if there else [],
                "before": "", "after": ""}

    def directory(self, spec):
        """A directory (and its missing parents) with its owner, group and mode: {path, changed, changes}."""
        path = spec["path"]
        if not os.path.isabs(path):
            raise FileSetError("%s is not an absolute path" % path)
        uid, gid = resolve_id(spec["owner"], "owner"), resolve_id(spec["group"], "group")
        mode = parse_mode(spec["mode"])
        if os.path.lexists(path) and not (os.path.isdir(path) and not os.path.islink(path)):
            raise FileSetError("%s exists and is not a directory" % path)
        if not os.path.exists(path):
            changes = ["directory", "owner", "group", "mode"]
        else:
            info = os.stat(path)
            changes = [name for name, now, wanted in (("owner", info.st_uid, uid), ("group", info.st_gid, gid),
                                                      ("mode", stat.S_IMODE(info.st_mode), mode)) if now != wanted]
        if changes and not self.check_mode:
            if "directory" in changes:
                os.makedirs(path, mode)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        return {"path": path, "changed": bool(changes), "changes": changes, "before": "", "after": ""}

    def run(self, specs, absent=(), directories=()):
        """The directories, every file in order, then the ones to remove: (changed, results). The
        first one that fails stops the rest."""
        results = [self.directory(spec) for spec in directories]
        results += [self.apply(spec) for spec in specs] + [self.remove(path) for path in absent]
        return any(r["changed"] for r in results), results
