# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Release history of a Compose project: pure file logic, no Ansible imports.

Layout under the project directory::

    releases/<id>/compose.yaml, .env, release.json
    releases/current -> <id>      (relative symlink)
    audit.log                      (JSON lines)
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile

RELEASE_FILES = ("compose.yaml", ".env")
ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9._-]{1,64}$")


class ReleaseError(Exception):
    pass


def releases_dir(project_dir):
    return os.path.join(project_dir, "releases")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def new_release_id(version, now=None):
    stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(version))[:64] or "unversioned"
    return "%s-%s" % (stamp, safe)


def list_releases(project_dir):
    """Release ids, newest first (ids start with a UTC timestamp)."""
    path = releases_dir(project_dir)
    if not os.path.isdir(path):
        return []
    ids = [name for name in os.listdir(path) if ID_PATTERN.match(name) and os.path.isdir(os.path.join(path, name))]
    return sorted(ids, reverse=True)


def current_release(project_dir):
    link = os.path.join(releases_dir(project_dir), "current")
    if not os.path.islink(link):
        return None
    target = os.path.basename(os.readlink(link))
    return target if ID_PATTERN.match(target) else None


def read_release(project_dir, release_id):
    with open(os.path.join(releases_dir(project_dir), release_id, "release.json"), encoding="utf-8") as f:
        return json.load(f)


def kept_images(project_dir):
    """(references, image IDs) the releases in the history run: what pruning keeps."""
    refs, ids = set(), set()
    for release_id in list_releases(project_dir):
        try:
            release = read_release(project_dir, release_id)
        except (IOError, OSError, ValueError):
            continue
        refs.update(ref for ref in (release.get("images") or {}).values() if ref)
        ids.update(image_id for image_id in (release.get("digests") or {}).values() if image_id)
    return refs, ids


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def live_matches(project_dir, release_id):
    """True when the live compose.yaml and .env equal those of the release."""
    base = os.path.join(releases_dir(project_dir), release_id)
    return all(_read(os.path.join(project_dir, n)) == _read(os.path.join(base, n)) for n in RELEASE_FILES)


def previous_release(project_dir):
    """The release that was current before the current one (from its metadata)."""
    current = current_release(project_dir)
    if current is None:
        return None
    previous = read_release(project_dir, current).get("previous")
    if previous and os.path.isdir(os.path.join(releases_dir(project_dir), previous)):
        return previous
    return None


def _point_current(project_dir, release_id):
    path = releases_dir(project_dir)
    tmp = os.path.join(path, ".current.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(release_id, tmp)
    os.replace(tmp, os.path.join(path, "current"))


def _write_json(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


def record(project_dir, version, images, actor, keep, digests=None, now=None):
    """Record the live files as a new release unless the current release holds them already.

    Returns (changed, release_id, pruned_ids).
    """
    if keep < 2:
        raise ReleaseError("keep must be at least 2: the current and the previous release")
    for name in RELEASE_FILES:
        if not os.path.isfile(os.path.join(project_dir, name)):
            raise ReleaseError("%s has no %s to record" % (project_dir, name))
    current = current_release(project_dir)
    if current and live_matches(project_dir, current):
        return False, current, []
    now = now or utcnow()
    release_id = new_release_id(version, now)
    if release_id in list_releases(project_dir):
        raise ReleaseError("release %s exists already" % release_id)
    target = os.path.join(releases_dir(project_dir), release_id)
    os.makedirs(target, mode=0o750)
    for name in RELEASE_FILES:
        shutil.copy2(os.path.join(project_dir, name), os.path.join(target, name))
    _write_json(os.path.join(target, "release.json"), {
        "id": release_id,
        "version": str(version),
        "images": images,
        "digests": digests or {},
        "deployed_by": actor,
        "deployed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "previous": current,
    })
    _point_current(project_dir, release_id)
    return True, release_id, prune(project_dir, keep)


def prune(project_dir, keep):
    """Delete all but the newest `keep` releases; never the current one nor its previous."""
    current = current_release(project_dir)
    protected = {current, previous_release(project_dir)}
    removed = []
    for release_id in list_releases(project_dir)[keep:]:
        if release_id not in protected:
            shutil.rmtree(os.path.join(releases_dir(project_dir), release_id))
            removed.append(release_id)
    return removed


def activate(project_dir, release_id):
    """Copy a release's files back to the project and point `current` at it.

    Returns True when anything changed.
    """
    if release_id not in list_releases(project_dir):
        raise ReleaseError("no release %s in %s (known: %s)" % (
            release_id, releases_dir(project_dir), ", ".join(list_releases(project_dir)) or "none"))
    changed = not live_matches(project_dir, release_id) or current_release(project_dir) != release_id
    if not changed:
        return False
    source = os.path.join(releases_dir(project_dir), release_id)
    for name in RELEASE_FILES:
        fd, tmp = tempfile.mkstemp(dir=project_dir, prefix=".tmp-")
        os.close(fd)
        shutil.copy2(os.path.join(source, name), tmp)
        os.replace(tmp, os.path.join(project_dir, name))
    _point_current(project_dir, release_id)
    return True


def audit(project_dir, event, now=None):
    """Append one JSON line to the project's audit log."""
    entry = dict(event)
    entry.setdefault("time", (now or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ"))
    line = json.dumps(entry, sort_keys=True) + "\n"
    fd = os.open(os.path.join(project_dir, "audit.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
    return entry
