#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: swarm_stack
short_description: Deploy a rendered Compose project to Docker Swarm as a stack and fail when Swarm rolled it back
version_added: 0.1.0
description:
  - Reads the Compose project the app role rendered in O(project_dir) (C(compose.yaml), C(.env), the secret files
    under C(secrets/), the helper scripts under C(selfhost/) and the Nginx site under C(nginx/)) and turns it into a
    stack that means the same to C(docker stack deploy) (see C(module_utils/stack_render.py)).
  - Secrets and the project's files become swarm secrets and configs named after a hash of their content (keyed with
    C(secrets/.hash-key) for secrets), because Swarm cannot change one in place. A changed secret is a rolling update
    of the services that use it.
  - Deploys when the rendered stack differs from the last one that converged (C(stack.yaml)), or when a service is
    missing, short of tasks, scaled away from the stack's replicas or was rolled back. Waits until every service converged, at most O(timeout) seconds.
  - C(docker stack deploy) exits 0 after Swarm rolled a failed update back (docker/cli issue 6752). This module reads
    every service's C(UpdateStatus) and fails naming the services Swarm rolled back or paused, with Swarm's message.
    C(stack.yaml) then keeps the last stack that converged.
  - A start-first update may leave every task of a routed service on one node (Swarm counts the old tasks while it
    places the new ones). Such a service is replaced once more (C(docker service update --force), start-first), which
    spreads its tasks; see RV(rebalanced).
  - Afterwards removes the stack's secret and config versions that neither the current nor the previous spec of any
    service uses.
author: selfhost.stack developers (@selfhost-stack)
requirements:
  - A swarm manager with the docker CLI, C(timeout) (coreutils) and PyYAML for the module's Python.
options:
  project_dir:
    description: The project directory the app role rendered.
    type: path
    required: true
  name:
    description: The stack's name (Swarm prefixes its services, networks, secrets and configs with it).
    type: str
    required: true
  routed:
    description: Services Nginx routes to; they update start-first (new task healthy before the old one stops).
    type: list
    elements: str
    default: []
  placement:
    description: Placement constraints per service, such as C(node.labels.selfhost.data == true).
    type: dict
    default: {}
  timeout:
    description: Seconds the deploy may take until every service converged (or was rolled back).
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    description: Renders the stack and reports whether a deploy is due, and why; changes nothing.
  diff_mode:
    support: full
    description: Shows the last deployed stack file and the rendered one. They hold secret names and file paths, never values.
"""

EXAMPLES = r"""
- name: Deploy the shop's stack
  selfhost.stack.swarm_stack:
    project_dir: /opt/shop
    name: shop
    routed: [api, web]
    placement:
      postgres: [node.labels.selfhost.data == true]
      nginx: [node.role == manager]
    timeout: 300
"""

RETURN = r"""
stack:
  description: The rendered stack document.
  returned: always
  type: dict
reasons:
  description: Why a deploy was due; empty when the stack already ran as rendered.
  returned: always
  type: list
  elements: str
  sample: ["backend: not deployed"]
created:
  description: Services that did not exist before this deploy.
  returned: always
  type: list
  elements: str
  sample: [postgres, redis]
rebalanced:
  description:
    - Routed services with more than one task that the update left all on one node, replaced once more (start-first)
      so that their tasks spread over the nodes. One lost node would otherwise take the service down.
  returned: always
  type: list
  elements: str
  sample: [backend]
removed:
  description: Secret and config versions removed because no service uses them any more.
  returned: always
  type: list
  elements: str
services:
  description: Services Swarm rolled back, on failure.
  returned: failure
  type: list
  elements: str
  sample: [backend]
failed_check:
  description: The step that failed (C(stack deploy), C(swarm update)).
  returned: failure
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfhost.stack.plugins.module_utils.compose_render import RenderError
from ansible_collections.selfhost.stack.plugins.module_utils import swarm_stack

try:
    import yaml
except ImportError:  # pragma: no cover - reported below
    yaml = None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            name=dict(type="str", required=True),
            routed=dict(type="list", elements="str", default=[]),
            placement=dict(type="dict", default={}),
            timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    if yaml is None:
        module.fail_json(msg="PyYAML is required on the swarm manager (python3-yaml)")
    p = module.params
    stack = swarm_stack.SwarmStack(module, p["project_dir"], p["name"], p["routed"], p["placement"])
    if module.check_mode and not os.path.exists(os.path.join(p["project_dir"], "compose.yaml")):
        module.exit_json(changed=True, stack={}, reasons=["first deploy: the project is not rendered yet"],
                         created=[], rebalanced=[], removed=[])
    try:
        doc = stack.render()
        text = "# Rendered by selfhost.stack.swarm_stack from compose.yaml: the stack that converged last.\n" \
            + yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)
        old = stack.deployed_text()
        reasons = ([] if old == text else ["the rendered stack changed"]) + stack.behind(doc)
        created, rebalanced = [], []
        if reasons and not module.check_mode:
            created, rebalanced = stack.deploy(text, p["timeout"],
                                               dict((n, spec["image"]) for n, spec in doc["services"].items()))
        removed = stack.prune() if not reasons or not module.check_mode else []
    except (swarm_stack.StackError, RenderError) as exc:
        module.fail_json(msg=str(exc), **getattr(exc, "details", {}))
    result = dict(changed=bool(reasons or removed), stack=doc, reasons=reasons, created=created, rebalanced=rebalanced,
                  removed=removed)
    if module._diff and old != text:
        result["diff"] = {"before": old, "after": text, "before_header": stack.path, "after_header": stack.path}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
