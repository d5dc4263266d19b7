#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_pool
short_description: Drain and undrain the servers of an HAProxy backend through its runtime API
version_added: 0.1.0
description:
  - Talks to HAProxy's admin socket on the host (no reload, no configuration change). Puts the
    servers in O(drained) into drain state (no new requests; requests in flight finish; health
    checks go on) and every other server of O(backend) into ready state.
  - Then waits until the drained servers have no request in flight or queued, at most
    O(drain_timeout) seconds.
  - Changes are runtime state only; HAProxy keeps them across reloads when the configuration
    has C(server-state-file) and C(load-server-state-from-file) (the lb role's does).
author: selfhost.stack developers (@selfhost-stack)
options:
  socket:
    description: Path of HAProxy's admin socket (C(stats socket ... level admin)).
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description: The backend whose servers are drained or undrained.
    type: str
    required: true
  drained:
    description: Servers of O(backend), by name, to drain. Every other server is made ready.
    type: list
    elements: str
    default: []
  drain_timeout:
    description: Seconds to wait at most for the drained servers' requests in flight to finish.
    type: float
    default: 30
  keep_serving:
    description:
      - Fail, changing nothing, when draining would leave no server of O(backend) up and taking
        requests (the other servers are down or drained already).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reports which servers would be drained or readied and sends no command that changes state.
  diff_mode:
    support: full
    description: Shows each server's admin state (V(ready), V(drain), V(maint)) before and after.
notes:
  - The logic lives in the C(haproxy_runtime) module_utils and is unit tested against a fake socket.
"""

EXAMPLES = r"""
- name: Take app1 out of rotation, waiting for its requests in flight
  selfhost.stack.haproxy_pool:
    backend: app_hosts
    drained: [app1]

- name: Put every server back
  selfhost.stack.haproxy_pool:
    backend: app_hosts
    drained: []
"""

RETURN = r"""
drained:
  description: Servers this task put into drain state.
  returned: always
  type: list
  elements: str
readied:
  description: Servers this task put back into ready state.
  returned: always
  type: list
  elements: str
waited_s:
  description: Seconds waited for the drained servers' requests in flight.
  returned: always
  type: float
in_flight:
  description: Drained servers that still had requests in flight after O(drain_timeout), with their count.
  returned: always
  type: dict
servers:
  description: State of every server of the backend after the task.
  returned: always
  type: dict
  contains:
    address:
      description: The address HAProxy sends requests to.
      type: str
    admin:
      description: V(ready), V(drain) or V(maint).
      type: str
    health:
      description: What the health checks say, V(up), V(down), V(starting) or V(stopping).
      type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.stack.plugins.module_utils import haproxy_runtime as hr


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            backend=dict(type="str", required=True),
            drained=dict(type="list", elements="str", default=[]),
            drain_timeout=dict(type="float", default=30),
            keep_serving=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    pool = hr.Pool(hr.RuntimeAPI(p["socket"]), p["backend"])
    try:
        result = pool.apply(p["drained"], keep_serving=p["keep_serving"], drain_timeout=p["drain_timeout"],
                            check_mode=module.check_mode)
    except (hr.HAProxyError, hr.PoolError) as exc:
        module.fail_json(msg=str(exc))
    if result["in_flight"]:
        module.warn("%s still had requests in flight after %ss: %s" % (
            ", ".join(sorted(result["in_flight"])), p["drain_timeout"], result["in_flight"]))
    diff = result.pop("diff")
    if module._diff and (result["drained"] or result["readied"]):
        result["diff"] = diff
    module.exit_json(changed=bool(result["drained"] or result["readied"]), **result)


if __name__ == "__main__":
    main()
