#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: compose_rollout
short_description: Roll Compose services behind Nginx to their rendered configuration without downtime
version_added: 0.1.0
description:
  - Finds which services C(docker compose up) would still touch, that is whose containers are
    missing, too few or too many, created from another configuration (Compose's C(config-hash)
    label against C(docker compose config --hash)), from another image than the one the service's
    reference names on the host now, stopped or not healthy. Returns them in RV(pending), except
    the rolled ones.
  - For each such service in O(roll) that has containers, starts containers of the new configuration beside the old ones
    (C(docker compose up --no-recreate --scale)), waits until they are healthy,
    points Nginx's upstream pools at them (a graceful reload, so requests in flight finish on the
    old containers), waits O(drain_seconds), then stops and removes the old containers.
  - When the new containers do not become healthy within O(health_timeout), fails with their
    health log and changes neither Nginx nor the old containers, which keep serving. Running it
    again after restoring the previous files removes the failed containers.
  - Services with no container at all are left to C(docker compose up).
  - Containers of the project that Docker created but never started (a refused option, an
    earlier run that was killed) are removed first, as they would block every later C(up).
  - A pool whose service has no serving container names its running containers, or none, and the
    edge then answers 503 for it (see the role's C(nginx-start)). Nginx is reloaded only while it
    runs; a stopped Nginx is in RV(pending), so the following C(up) starts it.
  - With O(roll) empty it only makes the upstream pools name the serving containers.
author: selfhost.stack developers (@selfhost-stack)
requirements:
  - Docker Engine with the Compose v2 plugin on the host.
options:
  project_dir:
    description: The Compose project directory.
    type: path
    required: true
  roll:
    description: Services to roll to the rendered configuration.
    type: list
    elements: str
    default: []
  replicas:
    description: Container count per service; when not given, the Compose file's C(deploy.replicas) (or C(scale)), else 1.
    type: dict
    default: {}
  pools:
    description: Nginx upstream pools to keep in line with the serving containers.
    type: list
    elements: dict
    default: []
    suboptions:
      service:
        description: Compose service whose containers form the pool.
        type: str
        required: true
      pool:
        description: Name of the upstream block.
        type: str
        required: true
      port:
        description: Port the service listens on inside its containers.
        type: int
        required: true
  upstreams_path:
    description:
      - File holding the upstream blocks by container name, inside Nginx's configuration directory. Required with O(pools).
      - Nginx does not load it itself; the helper C(/selfhost/nginx-start --reload) run in the Nginx container resolves it
        into the pools Nginx loads, tests the configuration and reloads.
    type: path
  nginx_service:
    description: Compose service of the Nginx that reads O(upstreams_path).
    type: str
    default: nginx
  health_timeout:
    description: Seconds new containers have to become healthy.
    type: int
    default: 120
  drain_seconds:
    description: Seconds between the Nginx reload and stopping the old containers.
    type: float
    default: 2
  stop_timeout:
    description: Seconds an old container has to finish its requests after SIGTERM.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: Reports which services would roll and whether the pools would change.
  diff_mode:
    support: full
    description: Shows the upstream file before and after.
"""

EXAMPLES = r"""
- name: Roll the backend and frontend to the new images
  selfhost.stack.compose_rollout:
    project_dir: /opt/shop
    roll: [backend, frontend]
    replicas: {backend: 2}
    pools:
      - {service: backend, pool: backend_pool, port: 8000}
      - {service: frontend, pool: frontend_pool, port: 8080}
    upstreams_path: /opt/shop/nginx/upstreams.pools
"""

RETURN = r"""
rolled:
  description: Per rolled service, the containers started and the containers stopped.
  returned: always
  type: dict
  sample: {backend: {started: [shop-backend-3], stopped: [shop-backend-1]}}
serving:
  description: Per pool service, the containers Nginx sends traffic to after the task.
  returned: always
  type: dict
  sample: {backend: [shop-backend-3]}
pending:
  description:
    - Services not rolled that C(docker compose up) would still create, recreate or start, each with the reason.
    - Empty when the running project matches the Compose file, so a plain C(up) can be skipped.
  returned: always
  type: dict
  sample: {redis: "shop-redis-1 has another configuration"}
removed:
  description: Containers Docker had created but never started, removed before anything else.
  returned: always
  type: list
  elements: str
  sample: [shop-frontend-4]
"""

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.stack.plugins.module_utils import rollout

NGINX_START = "/selfhost/nginx-start"  # the app role's helper, mounted into the Nginx container


class Compose(object):
    def __init__(self, module, project_dir):
        self.module = module
        self.project_dir = project_dir
        self._config = None

    def run(self, *args):
        rc, out, err = self.module.run_command(list(args), cwd=self.project_dir)
        if rc != 0:
            self.module.fail_json(msg="%s failed (rc %d): %s" % (" ".join(args), rc, (err or out).strip()))
        return out

    def compose(self, *args):
        return self.run("docker", "compose", *args)

    def exec_in(self, service, command, attempts=3):
        """`docker compose exec` in a service, tried again when the runtime could not start it."""
        args = ["docker", "compose", "exec", "-T", service] + list(command)
        for attempt in range(attempts):
            rc, out, err = self.module.run_command(args, cwd=self.project_dir)
            if rc == 0 or not rollout.exec_never_started(rc, err) or attempt == attempts - 1:
                break
            time.sleep(1)
        if rc != 0:
            self.module.fail_json(msg="%s failed (rc %d): %s" % (" ".join(args), rc, (err or out).strip()))
        return out

    def containers(self, service=None):
        """The project's containers (of one service, or all), one-off `run` containers left out."""
        ids = self.compose("ps", "--all", "--quiet", *([service] if service else [])).split()
        if not ids:
            return []
        found = [rollout.Container.from_inspect(d) for d in json.loads(self.run("docker", "inspect", *ids))]
        return [c for c in found if not c.oneoff]

    def config(self):
        if self._config is None:
            self._config = json.loads(self.compose("config", "--format", "json"))
        return self._config

    def replicas(self, service, wanted):
        if service in wanted:
            return int(wanted[service])
        spec = self.config()["services"][service]
        return int((spec.get("deploy") or {}).get("replicas") or spec.get("scale") or 1)

    def config_hashes(self):
        return rollout.parse_hashes(self.compose("config", "--hash", "*"))

    def image_id(self, service):
        """ID of the image the service's reference names on this host; None when it is not here."""
        image = self.config()["services"][service].get("image")
        if not image:
            return rollout.ANY_IMAGE  # built by Compose: nothing to compare with
        rc, out, dummy = self.module.run_command(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                                                 cwd=self.project_dir)
        return out.strip() if rc == 0 and out.strip() else None

    def health_log(self, name):
        rc, out, dummy = self.module.run_command(
            ["docker", "inspect", "--format", "{{json .State.Health}}", name], cwd=self.project_dir)
        if rc != 0 or not out.strip() or out.strip() == "null":
            return ""
        logs = (json.loads(out).get("Log") or [])[-1:]
        return logs[0].get("Output", "").strip()[-300:] if logs else ""


def wait_serving(module, compose, service, before, replicas, timeout):
    """Wait until `replicas` containers started after `before` serve; on timeout remove them and fail."""
    deadline = time.monotonic() + timeout
    while True:
        new = [c for c in compose.containers(service) if c.name not in before]
        serving = [c for c in new if c.serving]
        if len(serving) >= replicas:
            return serving[:replicas]
        if time.monotonic() > deadline or any(c.state in ("exited", "dead") for c in new):
            detail = "; ".join("%s is %s/%s: %s" % (c.name, c.state, c.health, compose.health_log(c.name))
                               for c in new if not c.serving) or "no new container started"
            for c in new:
                compose.run("docker", "rm", "--force", c.name)
            module.fail_json(msg="new %s containers did not become healthy within %ds, removed them; the old ones "
                             "keep serving: %s" % (service, timeout, detail),
                             failed_check="container health", service=service)
        time.sleep(1)


def write_atomic(path, content):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            roll=dict(type="list", elements="str", default=[]),
            replicas=dict(type="dict", default={}),
            pools=dict(type="list", elements="dict", default=[], options=dict(
                service=dict(type="str", required=True),
                pool=dict(type="str", required=True),
                port=dict(type="int", required=True),
            )),
            upstreams_path=dict(type="path"),
            nginx_service=dict(type="str", default="nginx"),
            health_timeout=dict(type="int", default=120),
            drain_seconds=dict(type="float", default=2),
            stop_timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["pools"] and not p["upstreams_path"]:
        module.fail_json(msg="upstreams_path is required with pools")
    compose = Compose(module, p["project_dir"])
    changed = False
    rolled, stale, serving = {}, {}, {}

    found = compose.containers()
    removed = rollout.leftovers(found)
    if removed:
        changed = True
        if not module.check_mode:
            compose.run("docker", "rm", "--force", *removed)

    # What `docker compose up` would still touch, judged as Compose does (one `config --hash`
    # and one inspect of every container: cheap enough for every deploy, unchanged ones included).
    hashes = compose.config_hashes()
    by_service = {}
    for c in found:
        if c.name not in removed:
            by_service.setdefault(c.service, []).append(c)
    outdated = {}
    for service in compose.config()["services"]:
        reason = rollout.out_of_date(by_service.get(service, []), compose.replicas(service, p["replicas"]),
                                     hashes.get(service), compose.image_id(service))
        if reason:
            outdated[service] = reason
    for service in by_service:
        if service not in compose.config()["services"]:
            outdated[service] = "not in the Compose file any more (orphan)"
    pending = dict((s, r) for s, r in outdated.items() if s not in p["roll"] or not by_service.get(s))

    for service in p["roll"]:
        containers = by_service.get(service, [])
        if not containers:
            continue  # not deployed yet: docker compose up creates them
        if service not in outdated:
            serving[service] = [c.name for c in containers]
            continue
        changed = True
        replicas = compose.replicas(service, p["replicas"])
        before = set(c.name for c in containers)
        if module.check_mode:
            rolled[service] = {"started": ["(%d new)" % replicas], "stopped": sorted(before)}
            continue
        if compose.image_id(service) is None:
            compose.compose("pull", "--quiet", service)
        rc, out, err = module.run_command(
            ["docker", "compose", "up", "--detach", "--no-recreate", "--pull", "never", "--scale",
             "%s=%d" % (service, len(containers) + replicas), service], cwd=p["project_dir"])
        if rc != 0:
            # Containers Docker created but could not start would block every later run.
            for c in compose.containers(service):
                if c.name not in before:
                    compose.run("docker", "rm", "--force", c.name)
            module.fail_json(msg="starting new %s containers failed, removed them; the old ones keep serving: %s"
                             % (service, (err or out).strip()[-1500:]), failed_check="container start", service=service)
        current = wait_serving(module, compose, service, before, replicas, p["health_timeout"])
        serving[service] = [c.name for c in current]
        stale[service] = sorted(before)
        rolled[service] = {"started": sorted(serving[service]), "stopped": stale[service]}

    diff = {}
    if p["pools"]:
        pools = []
        for pool in p["pools"]:
            names = serving.get(pool["service"])
            if names is None:
                containers = by_service.get(pool["service"], [])
                if not containers:
                    continue  # not deployed yet: docker compose up creates them
                names = rollout.pool_members(containers)
                serving[pool["service"]] = names
            pools.append((pool["pool"], pool["port"], names))
        content = rollout.render_upstreams(pools)
        path = p["upstreams_path"]
        old = open(path).read() if os.path.exists(path) else ""
        if len(pools) == len(p["pools"]) and old != content:
            changed = True
            diff = {"before": old, "after": content, "before_header": path, "after_header": path}
            if not module.check_mode:
                write_atomic(path, content)
                if any(c.state == "running" for c in by_service.get(p["nginx_service"], [])):
                    compose.exec_in(p["nginx_service"], ["/bin/sh", NGINX_START, "--reload"])
                if any(stale.values()):
                    time.sleep(p["drain_seconds"])

    for service, names in stale.items():
        for name in names:
            compose.run("docker", "stop", "--time", str(p["stop_timeout"]), name)
            compose.run("docker", "rm", name)

    result = dict(changed=changed, rolled=rolled, serving=serving, pending=pending, removed=removed)
    if module._diff and diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
