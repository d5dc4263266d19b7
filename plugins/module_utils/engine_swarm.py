# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Swarm engine of the switch: the whole stack in one `docker stack deploy` from a manager.

Swarm rolls each changed service itself (routed services start-first, the others stop-first)
and rolls one back when its new tasks fail their healthcheck; converge() then fails naming it.
The stack is rendered from the project files the switch wrote (module_utils.swarm_stack)."""

from __future__ import annotations

import json
import re

from ansible_collections.selfhost.stack.plugins.module_utils import swarm_stack
from ansible_collections.selfhost.stack.plugins.module_utils.engine import PASSWORD_FILES, Engine, SwitchFailed
from ansible_collections.selfhost.stack.plugins.module_utils.engine_compose import redis_requirepass
from ansible_collections.selfhost.stack.plugins.module_utils.stack_render import RenderError

POOLS_FILE = "nginx/upstreams.pools"
POOLS_HEADER = ("# Managed by selfhost.stack: the services Nginx sends traffic to, by service name: on the swarm\n"
                "# each name resolves to the address of every task (endpoint mode dnsrr). /selfhost/nginx-start\n"
                "# resolves them into the pools Nginx loads every 2 seconds, so this file is not loaded by Nginx itself.\n")
LABEL_CONSTRAINT = re.compile(r"^node[.]labels[.]([^ =!]+) *== *(.*)$")


def missing_labels(placement, services, node_labels):
    """[(service, constraint)] for each `node.labels.KEY == VALUE` no node's labels satisfy."""
    missing = []
    for service, constraints in sorted(placement.items()):
        if service not in services:
            continue
        for constraint in constraints:
            match = LABEL_CONSTRAINT.match(constraint)
            if match and not any((labels or {}).get(match.group(1)) == match.group(2).strip() for labels in node_labels):
                missing.append((service, constraint))
    return missing


class SwarmEngine(Engine):
    name = "swarm"

    def __init__(self, module, params, project):
        super(SwarmEngine, self).__init__(module, params, project)
        self.services = params["services"]
        self.placement = dict((s, c) for s, c in (params["placement"] or {}).items() if s in self.services)
        self._stack = None

    def stack(self):
        if self._stack is None:
            if not swarm_stack.HAS_YAML:
                raise SwitchFailed("Deploy the stack", "PyYAML is required on the swarm manager (python3-yaml)")
            self._stack = swarm_stack.SwarmStack(self.module, self.params["project_dir"], self.params["name"],
                                                 self.params["routed"], self.placement)
        return self._stack

    # -- before any change -------------------------------------------------------------------
    def observe(self):
        self.read_running_passwords(PASSWORD_FILES)

    def validate(self, staged):
        self.check_nodes()
        self.refuse_rotation()
        rc, out, err = self.docker("compose", "--project-directory", self.params["project_dir"], "--file", staged["compose"],
                                   "--env-file", staged["env"], "config", "--quiet", check=False)
        if rc != 0:
            raise SwitchFailed("Validate the Compose file", (err or out).strip()[-1500:], before_change=True)

    def precheck(self):
        """Only where the swarm exists already: on a new one the docker role forms it first, and
        validate() checks again before the deploy."""
        rc, out, _err = self.docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
                                    check=False) if self.module.get_bin_path("docker") else (1, "", "")
        if rc == 0 and out.strip() == "active true":
            self.check_nodes()

    def preflight(self):
        raise SwitchFailed(
            "Refuse update.yml's batches on a swarm",
            "app_engine is swarm: playbooks/update.yml rolls Compose hosts in batches. On a swarm run playbooks/deploy.yml "
            "with the new version: Swarm rolls each service start-first itself and rolls back one that fails its "
            "healthcheck.", before_change=True)

    def check_nodes(self):
        """This host manages an active swarm, and a node carries every label the placement names
        (a task placed on no node would wait for ever)."""
        rc, out, err = self.docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}", check=False)
        if out.strip() != "active true":
            raise SwitchFailed(
                "Check that this host manages an active swarm",
                "app_engine is swarm, but this host (app_swarm_manager) is not a manager of an active swarm (%s). Put it "
                "in the inventory group swarm_managers so the docker role forms the swarm, or set app_swarm_manager to a "
                "manager." % (out.strip() or err.strip()), before_change=True)
        _rc, out, _err = self.docker("node", "ls", "--quiet")
        labels = []
        if out.split():
            _rc, out, _err = self.docker("node", "inspect", "--format", "{{json .Spec.Labels}}", *out.split())
            labels = [json.loads(line) for line in out.splitlines() if line.strip()]
        missing = missing_labels(self.placement, self.services, labels)
        if missing:
            raise SwitchFailed(
                "Check that a node carries every label app_swarm_placement names",
                "app_swarm_placement places %s on %s, but no node of the swarm carries that label (labels: %s). Set the "
                "label with docker_swarm_node_labels on a node, or change the constraint. Nothing was deployed." % (
                    ", ".join(sorted(set(s for s, _c in missing))), ", ".join(c for _s, c in missing),
                    json.dumps(labels)), before_change=True)

    def refuse_rotation(self):
        """The stack does not change a rotated password in the running PostgreSQL or Redis yet."""
        rotates = []
        running_db = self.running_passwords.get("postgres/db_password")
        if running_db is not None and self.params["db_password"] is not None and running_db != self.params["db_password"]:
            rotates.append("app_db_password")
        if "redis/redis.conf" in self.running_passwords and \
                redis_requirepass(self.running_passwords["redis/redis.conf"]) != (self.params["redis_password"] or ""):
            rotates.append("app_redis_password")
        if rotates:
            raise SwitchFailed(
                "Refuse to rotate the PostgreSQL or Redis password on a swarm",
                "%s differ%s from the password%s the running stack uses: rotating them on a swarm is not supported yet "
                "(the role does not change them in the running server first). Nothing was changed. Set the old value "
                "back." % (" and ".join(rotates), "" if len(rotates) > 1 else "s", "s" if len(rotates) > 1 else ""),
                before_change=True)

    def plan(self, files_changed):
        if files_changed:
            return {"stack": "stack: the project files change"}
        try:
            doc = self.stack().render()
        except (swarm_stack.StackError, RenderError, OSError):
            return {"stack": "the project files change"}
        return dict((r.split(":")[0], r) for r in self.behind(doc))

    def engine_files(self):
        """The pools name the services, whose tasks Nginx finds itself."""
        if "nginx" not in self.services:
            return []
        lines = [POOLS_HEADER]
        for pool in self.params["pools"]:
            lines.append("upstream %s {\n    server %s:%d max_fails=0;\n}\n\n" % (pool["pool"], pool["service"], pool["port"]))
        return [{"path": POOLS_FILE, "content": "".join(lines), "mode": "0644"}]

    def text_and_reasons(self):
        stack = self.stack()
        doc = stack.render()
        text = swarm_stack.dump(doc)
        old = stack.deployed_text()
        return doc, text, old, self.behind(doc, old != text)

    def behind(self, doc, changed=None):
        stack = self.stack()
        if changed is None:
            changed = stack.deployed_text() != swarm_stack.dump(doc)
        return (["the rendered stack changed"] if changed else []) + stack.behind(doc)

    # -- the switch --------------------------------------------------------------------------
    def migrate(self, migrations, marker, files=None):
        if migrations:
            raise SwitchFailed("Migrate the database", "the role does not run migrations on a swarm yet")
        return False

    def converge(self, rollout):
        try:
            doc, text, old, reasons = self.text_and_reasons()
            if reasons:
                created, rebalanced = self.stack().deploy(text, self.params["health_timeout"],
                                                          dict((n, spec["image"]) for n, spec in doc["services"].items()))
                rollout.note("stack deployed: %s" % "; ".join(reasons))
                if created:
                    rollout.note("created: %s" % ", ".join(created))
                if rebalanced:
                    rollout.note("spread over the nodes: %s" % ", ".join(rebalanced))
                self.project.record_diff(self.stack().path, old, text)
            removed = self.stack().prune()
            if removed:
                rollout.note("removed unused secret and config versions: %s" % ", ".join(removed))
        except swarm_stack.StackError as exc:
            raise SwitchFailed(exc.details.get("failed_check", "Deploy the stack"), str(exc), **exc.details)
        except RenderError as exc:
            raise SwitchFailed("Deploy the stack", str(exc))
        return rollout
