# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How an image starts: its entrypoint, command, environment, volumes and the uid/gid its
process runs as. The parts without I/O; the module selfhost.stack.image_config does the I/O."""

from __future__ import annotations


def normalise_ref(ref):
    """An image reference as `docker image inspect` lists it in RepoTags or RepoDigests."""
    name, _sep, digest = ref.partition("@")
    if name.startswith("docker.io/"):
        name = name[len("docker.io/"):]
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/"):]
    tagged = ":" in name.rsplit("/", 1)[-1]
    if digest:
        return "%s@%s" % (name.rsplit(":", 1)[0] if tagged else name, digest)
    return name if tagged else name + ":latest"


def by_reference(refs, inspected):
    """{reference: its `docker image inspect` object, or None} from one inspect of them all."""
    names = {}
    for image in inspected:
        for name in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []):
            names[name] = image
    found = {}
    for ref in refs:
        found[ref] = names.get(normalise_ref(ref)) or names.get(ref) or next(
            (image for image in inspected if image.get("Id") == ref), None)
    return found


def parse_table(text):
    """/etc/passwd or /etc/group content: {name: (id, gid or None)}."""
    table = {}
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) < 3 or not fields[2].isdigit():
            continue
        gid = int(fields[3]) if len(fields) > 3 and fields[3].isdigit() else None
        table.setdefault(fields[0], (int(fields[2]), gid))
    return table


def resolve_user(user, passwd="", group=""):
    """uid, gid for Docker's USER value ('', 'name', 'uid', 'name:group', 'uid:gid').

    Returns (uid, gid, error): error is a text when a name is not in the image's files.
    An empty USER is root. A uid without a group takes the user's primary group, else the uid.
    """
    user = (user or "").strip()
    if not user:
        return 0, 0, None
    name, _sep, grp = user.partition(":")
    users, groups = parse_table(passwd), parse_table(group)
    if name.isdigit():
        uid = int(name)
        primary = next((g for (u, g) in users.values() if u == uid), None)
    elif name in users:
        uid, primary = users[name]
    else:
        return None, None, "user %r is not in the image's /etc/passwd" % name
    if not grp:
        return uid, primary if primary is not None else uid, None
    if grp.isdigit():
        return uid, int(grp), None
    if grp in groups:
        return uid, groups[grp][0], None
    return None, None, "group %r is not in the image's /etc/group" % grp


def summarize(inspect):
    """The parts of `docker image inspect` output a Compose service depends on."""
    config = inspect.get("Config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    return {
        "id": inspect.get("Id"),
        "entrypoint": config.get("Entrypoint") or [],
        "cmd": config.get("Cmd") or [],
        "user": config.get("User") or "",
        "env": env,
        "volumes": sorted((config.get("Volumes") or {}).keys()),
        "workdir": config.get("WorkingDir") or "",
    }


def files_from_tar(data, names):
    """{basename: text} of the regular files `names` in a tar stream (docker cp ... -)."""
    import io
    import tarfile

    found = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if base in names and member.isfile():
                found[base] = tar.extractfile(member).read().decode("utf-8", "replace")
    return found
