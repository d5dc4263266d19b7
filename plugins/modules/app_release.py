#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: app_release
short_description: Release history of a Compose project on the host
version_added: 0.1.0
description:
  - Keeps every release of a Compose project (its C(compose.yaml) and C(.env), image references
    and digests, who deployed it and when) under O(project_dir)/releases/, with a C(current)
    pointer, and appends deploys and rollbacks to O(project_dir)/audit.log as JSON lines.
  - O(state=recorded) records the live files as a new release unless the current release holds
    them already, then keeps the newest O(keep) releases (never the current one nor its previous).
  - O(state=active) copies a recorded release's files back into O(project_dir) and points
    C(current) at it; starting the containers is left to the caller.
  - O(state=query) only reports the history, and appends O(audit_event) when given.
author: selfhost.stack developers (@selfhost-stack)
options:
  project_dir:
    description: The Compose project directory (holding C(compose.yaml) and C(.env)).
    type: path
    required: true
  state:
    description: What to do, see the description.
    type: str
    choices: [recorded, active, query]
    default: query
  version:
    description: Version label of the release being recorded (O(state=recorded)).
    type: str
  images:
    description: Image reference per service of the release being recorded.
    type: dict
    default: {}
  digests:
    description: Image digest per service of the release being recorded.
    type: dict
    default: {}
  actor:
    description: Who deploys (recorded in the release and the audit log).
    type: str
    default: unknown
  keep:
    description: How many releases to keep (at least 2).
    type: int
    default: 5
  release:
    description:
      - The release to activate with O(state=active), by id, or V(previous) for the release
        that was current before the current one.
    type: str
  reason:
    description: Audit log action of an activation, for example V(rollback) or V(revert).
    type: str
    default: rollback
  audit_event:
    description: An extra JSON object to append to the audit log (O(state=query)).
    type: dict
attributes:
  check_mode:
    support: full
    description: Reports what would change and writes nothing.
  diff_mode:
    support: full
    description: Shows the C(current) release before and after.
notes:
  - Pure file operations; the logic lives in the C(releases) module_utils and is unit tested.
"""

EXAMPLES = r"""
- name: Record the deployed files as a release
  selfhost.stack.app_release:
    project_dir: /opt/shop
    state: recorded
    version: "1.4.2"
    images:
      backend: registry.example.com/shop/backend:1.4.2
    actor: "{{ lookup('ansible.builtin.env', 'USER') }}"

- name: Go back to the previous release's files
  selfhost.stack.app_release:
    project_dir: /opt/shop
    state: active
    release: previous

- name: Read the history
  selfhost.stack.app_release:
    project_dir: /opt/shop
  register: history
"""

RETURN = r"""
current:
  description: The current release id after the task (null when there is none).
  returned: always
  type: str
  sample: 20261122T101500Z-1.4.2
previous:
  description: The release that was current before the current one.
  returned: always
  type: str
  sample: 20261121T093000Z-1.4.1
releases:
  description: All recorded release ids, newest first.
  returned: always
  type: list
  elements: str
release:
  description: Metadata of the current release (version, images, digests, deployed_by, deployed_at, previous).
  returned: when there is a current release
  type: dict
pruned:
  description: Release ids deleted by O(state=recorded).
  returned: always
  type: list
  elements: str
"""

import getpass

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.stack.plugins.module_utils import releases as rel


def _result(project_dir, changed, pruned=None):
    current = rel.current_release(project_dir)
    result = {
        "changed": changed,
        "current": current,
        "previous": rel.previous_release(project_dir),
        "releases": rel.list_releases(project_dir),
        "pruned": pruned or [],
    }
    if current:
        result["release"] = rel.read_release(project_dir, current)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            state=dict(type="str", default="query", choices=["recorded", "active", "query"]),
            version=dict(type="str"),
            images=dict(type="dict", default={}),
            digests=dict(type="dict", default={}),
            actor=dict(type="str", default="unknown"),
            keep=dict(type="int", default=5),
            release=dict(type="str"),
            reason=dict(type="str", default="rollback"),
            audit_event=dict(type="dict"),
        ),
        required_if=[("state", "recorded", ["version"]), ("state", "active", ["release"])],
        supports_check_mode=True,
    )
    p = module.params
    project_dir = p["project_dir"]
    before = rel.current_release(project_dir)
    host = module.run_command(["hostname"])[1].strip() or "unknown"
    actor = p["actor"] if p["actor"] != "unknown" else getpass.getuser()

    try:
        if p["state"] == "recorded":
            if p["keep"] < 2:
                module.fail_json(msg="keep must be at least 2 (the current and the previous release)")
            would = not (before and rel.live_matches(project_dir, before))
            if module.check_mode or not would:
                result = _result(project_dir, would)
            else:
                changed, release_id, pruned = rel.record(
                    project_dir, p["version"], p["images"], actor, p["keep"], p["digests"])
                rel.audit(project_dir, {"action": "deploy", "host": host, "actor": actor, "version": p["version"],
                                        "release": release_id, "from": before, "result": "ok"})
                result = _result(project_dir, changed, pruned)
        elif p["state"] == "active":
            target = p["release"]
            if target == "previous":
                target = rel.previous_release(project_dir)
                if target is None:
                    module.fail_json(msg="%s has no previous release to return to (releases: %s)" % (
                        project_dir, ", ".join(rel.list_releases(project_dir)) or "none"))
            if target not in rel.list_releases(project_dir):
                module.fail_json(msg="no release %s in %s/releases (known: %s)" % (
                    target, project_dir, ", ".join(rel.list_releases(project_dir)) or "none"))
            would = before != target or not rel.live_matches(project_dir, target)
            if would and not module.check_mode:
                rel.activate(project_dir, target)
                rel.audit(project_dir, {"action": p["reason"], "host": host, "actor": actor, "from": before,
                                        "release": target, "version": rel.read_release(project_dir, target).get("version")})
            result = _result(project_dir, would)
            if module.check_mode:
                result["current"] = target
        else:
            changed = bool(p["audit_event"])
            if changed and not module.check_mode:
                event = dict(p["audit_event"])
                event.setdefault("host", host)
                event.setdefault("actor", actor)
                rel.audit(project_dir, event)
            result = _result(project_dir, changed)
    except (rel.ReleaseError, OSError) as e:
        module.fail_json(msg=str(e))

    if module._diff:
        result["diff"] = {"before": {"current": before}, "after": {"current": result["current"]}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
