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
  - Images that are not on the host are listed in RV(missing), not an error, unless O(required).
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
attributes:
  check_mode:
    support: full
    description: Only reads; the temporary container that carries C(/etc/passwd) out is removed.
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
missing:
  description: Image references that are not on the host.
  returned: always
  type: list
  elements: str
  sample: [postgres:17]
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.stack.plugins.module_utils import image_config


class ImageReader(object):
    """Reads images through the docker CLI."""

    def __init__(self, module):
        self.module = module

    def docker(self, *args, **kwargs):
        return self.module.run_command(["docker"] + list(args), **kwargs)

    def inspect(self, ref):
        rc, out, dummy = self.docker("image", "inspect", ref)
        return image_config.summarize(json.loads(out)[0]) if rc == 0 else None

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
        passwd = group = ""
        if any(part and not part.isdigit() for part in wanted.split(":")) or (wanted and ":" not in wanted):
            passwd, group = self.account_files(ref)
        uid, gid, error = image_config.resolve_user(wanted, passwd, group)
        if error:
            self.module.fail_json(msg="%s: %s" % (ref, error), image=ref)
        info.update(user=wanted, uid=uid, gid=gid)
        return info


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images=dict(type="list", elements="str", required=True),
            users=dict(type="dict", default={}),
            required=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    images = list(dict.fromkeys(module.params["images"]))
    if not module.get_bin_path("docker"):
        if module.check_mode:  # a host whose Docker is not installed yet, in a check run
            module.exit_json(changed=False, images={}, missing=images)
        module.fail_json(msg="docker is not installed on this host (role selfhost.stack.docker installs it)")
    reader = ImageReader(module)
    found, missing = {}, []
    for ref in images:
        info = reader.read(ref, module.params["users"].get(ref))
        if info is None:
            missing.append(ref)
        else:
            found[ref] = info
    if missing and module.params["required"]:
        module.fail_json(msg="images not on the host: %s" % ", ".join(missing), images=found, missing=missing)
    module.exit_json(changed=False, images=found, missing=missing)


if __name__ == "__main__":
    main()
