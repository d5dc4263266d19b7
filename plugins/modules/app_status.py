#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: app_status
short_description: What one host of the app runs, for a fleet's status table
version_added: 0.1.0
description:
  - Reads the current release of the project in O(project_dir), the containers of each service
    (Compose) or the stack's services (Swarm, on the manager that deploys it), the backup role's
    status file, the expiry of the first certificate of O(certificates) that exists, the free space
    of O(disk_path) and the host's uptime.
  - Changes nothing. A part that cannot be read is V(null), never a failure, so a status play
    shows every host it reaches.
author: selfhost.stack developers (@selfhost-stack)
options:
  project_dir:
    description: The project directory of the app role (C(app_project_dir)).
    type: path
    required: true
  project:
    description: The Compose project or stack name (C(app_name)).
    type: str
    required: true
  engine:
    description: C(compose) or C(swarm) (C(app_engine)).
    type: str
    choices: [compose, swarm]
    default: compose
  deploys_here:
    description: On a swarm, whether this host is the manager that deploys the stack (it lists the services).
    type: bool
    default: true
  backup_file:
    description: The backup role's node_exporter status file (C(backup_status_file)).
    type: path
  certificates:
    description: Certificate files (PEM) to read the expiry of; the first that exists counts.
    type: list
    elements: path
    default: []
  disk_path:
    description: The file system whose free space counts (C(/) when it does not exist).
    type: path
    default: /var/lib/docker
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
notes:
  - The parsing lives in the C(host_status) module_utils and is unit tested.
"""

EXAMPLES = r"""
- name: Read this host's status
  selfhost.stack.app_status:
    project_dir: /opt/shop
    project: shop
    backup_file: /var/lib/node_exporter/textfile_collector/selfhost_backup_shop.prom
    certificates: [/opt/shop/tls/fullchain.pem, /etc/haproxy/tls/haproxy.pem]
  register: status
"""

RETURN = r"""
engine:
  description: O(engine), for the table.
  returned: always
  type: str
  sample: compose
release:
  description: The current release id (null when the host has none).
  returned: always
  type: str
  sample: 20261207T101500Z-v2
version:
  description: The version of the current release.
  returned: always
  type: str
  sample: v2
services:
  description:
    - Per service, C(containers) (wanted replicas on a swarm), C(running), C(serving) (healthy, or
      running without a healthcheck) and C(versions) (the image tags that run).
    - Empty when the host runs none; null when Docker could not be asked.
  returned: always
  type: dict
  sample: {"backend": {"containers": 1, "running": 1, "serving": 1, "versions": ["v2"]}}
backup:
  description: C(last_success) (epoch, null for none yet) and C(ok) (the last attempt succeeded); null without a status file.
  returned: always
  type: dict
certificate_expires:
  description: When the certificate expires (epoch), null without one.
  returned: always
  type: int
uptime_s:
  description: Seconds since the host booted.
  returned: always
  type: int
disk_free_bytes:
  description: Free bytes of O(disk_path) for unprivileged use.
  returned: always
  type: int
disk_free_pct:
  description: Free space of O(disk_path), percent.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.stack.plugins.module_utils.host_status import HostStatus


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            project=dict(type="str", required=True),
            engine=dict(type="str", default="compose", choices=["compose", "swarm"]),
            deploys_here=dict(type="bool", default=True),
            backup_file=dict(type="path"),
            certificates=dict(type="list", elements="path", default=[]),
            disk_path=dict(type="path", default="/var/lib/docker"),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def run(argv):
        if not module.get_bin_path(argv[0]):
            return 127, "", "%s not found" % argv[0]
        return module.run_command(argv)

    status = HostStatus(run, p["project_dir"], p["project"], p["engine"], p["deploys_here"], p["backup_file"],
                        p["certificates"], p["disk_path"]).collect()
    module.exit_json(changed=False, engine=p["engine"], **status)


if __name__ == "__main__":
    main()
