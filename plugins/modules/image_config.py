#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: image_config
short_description: How local images start, and the uid and gid they run as
version_added: 0.1.0
description:
  - Reads each image's entrypoint, command, environment, volumes and C(USER) with
    C(docker image inspect), and resolves a user or group name to its numeric id from the
    image's own C(/etc/passwd) and C(/etc/group), copied out of a container that is created
    (never started) and removed at once. The image needs no tool of its own for that.
  - The app role wraps an image's entrypoint with its own (to export secrets into the
    environment) and gives secret files to the uid the container starts as; both need this.
  - Images that are not on the host are pulled first (O(pull)); those still missing are listed in RV(missing), not
    an error, unless O(required).
  - The uid and gid a user name resolves to in an image are kept per image ID in O(cache) on the host, so the next
    run reads no file out of the same image again.
author: selfhost.stack developers (@selfhost-stack)
requirements:
  - Docker Engine on the host.
options:
  images:
    description: Image references to read.
    type: list
    elements: str
    required: true
  users:
    description:
      - Per image reference, a C(user[:group]) to resolve instead of the image's own C(USER)
        (a Compose service's C(user:)).
    type: dict
    default: {}
  required:
    description: Fail when an image is not on the host.
    type: bool
    default: false
  pull:
    description:
      - V(missing) pulls the images that are not on the host, V(always) every image, V(never) none.
      - Up to four pulls run at once. A failed pull fails the task with Docker's words, naming every image that
        failed.
    type: str
    choices: [missing, always, never]
    default: never
  cache:
    description: JSON file keeping the resolved uid and gid per image ID and user (0600 root); empty keeps none.
    type: path
    default: /var/cache/selfhost-stack/image-users.json
attributes:
  check_mode:
    support: full
    description: Only reads (no pull, the cache is not written); the temporary container that carries C(/etc/passwd) out is removed.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
"""

EXAMPLES = r"""
- name: Read how the images start
  selfhost.stack.image_config:
    images: [registry.example.com/shop/api:1.4.2, postgres:17]
    users: {registry.example.com/shop/api:1.4.2: appuser}
  register: images
"""

RETURN = r"""
images:
  description: Per image reference that is on the host, how it starts.
  returned: always
  type: dict
  sample:
    registry.example.com/shop/api:1.4.2:
      id: sha256:0123456789ab
      entrypoint: [docker-entrypoint.sh]
      cmd: [gunicorn, app:app]
      user: appuser
      uid: 1000
      gid: 1000
      env: {PATH: /usr/local/bin:/usr/bin:/bin}
      volumes: []
      workdir: /app
pulled:
  description: Image references pulled by this task.
  returned: always
  type: list
  elements: str
  sample: [registry.example.com/shop/api:1.4.2]
missing:
  description: Image references that are not on the host.
  returned: always
  type: list
  elements: str
  sample: [postgres:17]
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.stack.plugins.module_utils import image_config


PARALLEL_PULLS = 4


class ImageReader(object):
    """Reads images through the docker CLI."""

    def __init__(self, module, cache=None):
        self.module = module
        self.cache = cache if cache is not None else {}
        self.cache_changed = False
        self.inspected = {}  # reference -> inspect object, from inspect_all

    def docker(self, *args, **kwargs):
        return self.module.run_command(["docker"] + list(args), **kwargs)

    def inspect_all(self, refs):
        """Every image in one `docker image inspect` (the ones not here are left out of its answer)."""
        self.inspected = {}
        if refs:
            _rc, out, dummy = self.docker("image", "inspect", *refs)
            try:
                inspected = json.loads(out or "[]")
            except ValueError:
                inspected = []
            self.inspected = image_config.by_reference(refs, inspected)

    def inspect(self, ref):
        found = self.inspected.get(ref)
        if found is None:
            rc, out, dummy = self.docker("image", "inspect", ref)
            found = json.loads(out)[0] if rc == 0 else None
        return image_config.summarize(found) if found else None

    def account_files(self, ref):
        """The image's /etc/passwd and /etc/group texts ('' when the image has none)."""
        rc, out, err = self.docker("create", "--entrypoint", "/nonexistent", ref)
        if rc != 0:
            self.module.fail_json(msg="docker create %s failed: %s" % (ref, err.strip()))
        cid = out.strip()
        try:
            texts = {}
            for name in ("passwd", "group"):
                rc, data, dummy = self.docker("cp", "%s:/etc/%s" % (cid, name), "-", binary_data=True, encoding=None)
                if rc == 0:
                    texts.update(image_config.files_from_tar(data, [name]))
            return texts.get("passwd", ""), texts.get("group", "")
        finally:
            self.docker("rm", "--force", cid)

    def read(self, ref, user=None):
        info = self.inspect(ref)
        if info is None:
            return None
        wanted = info["user"] if user is None else user
        key = "%s|%s" % (info["id"], wanted)
        if key in self.cache:
            uid, gid = self.cache[key]
        else:
            passwd = group = ""
            if any(part and not part.isdigit() for part in wanted.split(":")) or (wanted and ":" not in wanted):
                passwd, group = self.account_files(ref)
            uid, gid, error = image_config.resolve_user(wanted, passwd, group)
            if error:
                self.module.fail_json(msg="%s: %s" % (ref, error), image=ref)
            self.cache[key] = [uid, gid]
            self.cache_changed = True
        info.update(user=wanted, uid=uid, gid=gid)
        return info

    def pull(self, ref):
        """None, or docker's words when the pull failed."""
        rc, out, err = self.docker("pull", "--quiet", ref)
        return None if rc == 0 else "docker pull %s failed (rc %d): %s" % (ref, rc, (err or out).strip()[-1000:])


def load_cache(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (IOError, OSError, ValueError):
        return {}


def save_cache(path, data):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images=dict(type="list", elements="str", required=True),
            users=dict(type="dict", default={}),
            required=dict(type="bool", default=False),
            pull=dict(type="str", default="never", choices=["missing", "always", "never"]),
            cache=dict(type="path", default="/var/cache/selfhost-stack/image-users.json"),
        ),
        supports_check_mode=True,
    )
    images = list(dict.fromkeys(module.params["images"]))
    cache_path = module.params["cache"]
    if not module.get_bin_path("docker"):
        if module.check_mode:  # a host whose Docker is not installed yet, in a check run
            module.exit_json(changed=False, images={}, missing=images)
        module.fail_json(msg="docker is not installed on this host (role selfhost.stack.docker installs it)")
    reader = ImageReader(module, load_cache(cache_path) if cache_path else {})
    users = module.params["users"]
    reader.inspect_all(images)
    before = dict((ref, reader.read(ref, users.get(ref))) for ref in images)
    wanted = [ref for ref in images if module.params["pull"] == "always"
              or (before[ref] is None and module.params["pull"] == "missing")]
    errors = {}
    if wanted and not module.check_mode:
        # At once: the registry and the engine take several pulls in parallel.
        with ThreadPoolExecutor(max_workers=PARALLEL_PULLS) as pool:
            errors = dict(zip(wanted, pool.map(reader.pull, wanted)))
        reader.inspected = {}  # read the pulled ones anew
    found, missing, pulled = {}, [], []
    failed = [errors[ref] for ref in wanted if errors.get(ref)]
    for ref in images:
        info = before[ref]
        if ref in errors and not errors[ref]:
            info = reader.read(ref, users.get(ref))
            if before[ref] is None or info is None or before[ref]["id"] != info["id"]:
                pulled.append(ref)  # a pull that found the image up to date changed nothing
        if info is None:
            missing.append(ref)
        elif not errors.get(ref):
            found[ref] = info
    if cache_path and reader.cache_changed and not module.check_mode:
        save_cache(cache_path, reader.cache)
    if failed:
        module.fail_json(msg="; ".join(failed), images=found, missing=missing, pulled=pulled)
    if missing and module.params["required"]:
        module.fail_json(msg="images not on the host: %s" % ", ".join(missing), images=found, missing=missing,
                         pulled=pulled)
    module.exit_json(changed=bool(pulled), images=found, missing=missing, pulled=pulled)


if __name__ == "__main__":
    main()
