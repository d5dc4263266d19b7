# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a successful switch may remove from its host, the parts without I/O: the images of the
app that no release in the history uses (and no container), and what Docker's prune commands
report they reclaimed."""

from __future__ import annotations

import re

from ansible_collections.selfhost.stack.plugins.module_utils.image_config import normalise_ref

# `docker image prune` and the classic builder print "Total reclaimed space: 1.2GB"; buildx "Total: 1.2GB".
RECLAIMED = re.compile(r"^Total(?: reclaimed space)?:\s*([0-9.]+)\s*([kKMGT]?i?B)\s*$", re.MULTILINE)
UNITS = {"": 1, "k": 1000, "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4}


def repository(ref):
    """The repository of an image reference: `registry:5000/shop/api` for
    `registry:5000/shop/api:2.0`, `postgres` for `docker.io/library/postgres@sha256:...`."""
    name = normalise_ref(ref).partition("@")[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def unused_images(listed, kept_refs, kept_ids):
    """The references to remove: tagged images in a repository that a kept reference names, other
    than the kept references, whose image ID no kept release or container uses. `listed`: the
    rows of `docker image ls --no-trunc --format '{{json .}}'` (Repository, Tag, ID)."""
    repositories = set(repository(ref) for ref in kept_refs)
    kept = set(normalise_ref(ref) for ref in kept_refs)
    found = set()
    for row in listed:
        name, tag, image_id = row.get("Repository") or "", row.get("Tag") or "", row.get("ID") or ""
        if name in ("", "<none>") or tag in ("", "<none>"):
            continue  # dangling, or pulled by digest only: `docker image prune` decides about them
        ref = normalise_ref("%s:%s" % (name, tag))
        if repository(ref) in repositories and ref not in kept and image_id not in kept_ids:
            found.add(ref)
    return sorted(found)


def reclaimed_bytes(output):
    """Bytes a prune command says it reclaimed (0 when it says nothing)."""
    total = 0
    for number, unit in RECLAIMED.findall(output or ""):
        total += int(float(number) * UNITS[unit[:-1].rstrip("i")])
    return total
