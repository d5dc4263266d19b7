#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: app_switch
short_description: Switch a host's application stack to a release, with a health gate and an automatic revert
version_added: 0.2.0
description:
  - The one switch of the C(selfhost.stack.app) role. A deploy, an update and a rollback run the same steps in one
    call on the host (on Docker Swarm, on the manager that deploys the stack), so a run costs one round trip however
    many files, services and images it touches.
  - Takes the deploy lock (O(lock_dir)); stages the release (the rendered O(files) and O(secret_files), or with
    O(action=rollback) the recorded files of O(release)); checks it before any change (the engine validates the
    Compose file, refuses to recreate PostgreSQL or Redis unless O(data_restart_allowed), refuses a PostgreSQL
    major version the data volume cannot open, copies static files out of their images aside); writes it;
    brings PostgreSQL and Redis up (a rotated Redis password beside the old one); runs new migrations;
    converges the containers (routed services without downtime behind the edge Nginx, the others stop-first; a
    rotated database password set in the running PostgreSQL right before the migrations or the new containers);
    passes the health gate (every container serving, then O(gate.successes) good answers from O(gate.url));
    records the release in O(project_dir)/releases and appends start and end lines to O(project_dir)/audit.log;
    removes what the history no longer needs (O(prune)).
  - On a failure after the first change, the host returns to the release it had, which must pass the gate again;
    the task then fails saying what failed and that it reverted. A failure before any change leaves the host as it
    was. A host with no earlier release stops with the reason.
  - O(action=preflight) runs only the checks (nothing changes); O(action=migrate) runs the migrations of the
    rendered release once, before any host switches; O(action=retire) drops old passwords Redis still accepts;
    O(action=check) runs the engine's checks of the host that need no release (on a swarm that exists, the
    placement against the nodes' labels).
  - The engine (O(engine)) holds everything that differs between Docker Compose and Docker Swarm
    (C(module_utils/engine_compose.py), C(module_utils/engine_swarm.py)).
author: selfhost.stack developers (@selfhost-stack)
requirements:
  - Docker Engine with the Compose v2 plugin on the host; PyYAML on a swarm manager (O(engine=swarm)).
options:
  project_dir:
    description: The project directory (C(compose.yaml), C(.env), C(secrets/), C(nginx/), C(releases/)).
    type: path
    required: true
  name:
    description: The Compose project (and Swarm stack) name.
    type: str
    required: true
  engine:
    description: What runs the containers.
    type: str
    choices: [compose, swarm]
    default: compose
  action:
    description: What to do; see the description.
    type: str
    choices: [deploy, update, rollback, preflight, migrate, retire, check]
    default: deploy
  host:
    description: The inventory name of the host, for the messages (default its hostname).
    type: str
    default: ""
  version:
    description: The version label of the release (the role's C(app_version)).
    type: str
    default: ""
  actor:
    description: Who deploys, as recorded in the release and the audit log.
    type: str
    default: unknown
  keep:
    description: How many releases to keep (at least 2).
    type: int
    default: 5
  lock_dir:
    description: The deploy lock, a directory (default C(.deploy.lock) in O(project_dir)).
    type: path
  lock_force:
    description: Break a lock a dead deploy left.
    type: bool
    default: false
  files:
    description: The rendered, non-secret project files, relative to O(project_dir); C(compose.yaml) is written last.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to O(project_dir).
        type: str
        required: true
      content:
        description: The file's text.
        type: str
        required: true
      mode:
        description: Octal mode (owner root).
        type: str
        default: "0644"
  secret_files:
    description:
      - One file per secret a service uses, written to C(secrets/<service>/<name>), mode 0400; a keyed hash of each
        service's secrets goes into C(.env) for its C(selfhost.secrets-hash) label.
    type: list
    elements: dict
    default: []
    suboptions:
      service:
        description: The service that reads it.
        type: str
        required: true
      name:
        description: The secret's name (the file name).
        type: str
        required: true
      content:
        description: The secret's value. Never shown in any output.
        type: str
        required: true
      owner:
        description: uid owning the file (default 0).
        type: str
      group:
        description: gid owning the file (default 0).
        type: str
  services:
    description: The services this host runs (on a swarm, the stack's), the collection's own included.
    type: list
    elements: str
    default: []
  routed:
    description: Services replaced without downtime (new containers beside the old, then the edge switches).
    type: list
    elements: str
    default: []
  pools:
    description: The edge Nginx's upstream pools.
    type: list
    elements: dict
    default: []
    suboptions:
      service:
        description: The service whose containers form the pool.
        type: str
        required: true
      pool:
        description: Name of the upstream block.
        type: str
        required: true
      port:
        description: Port the service listens on.
        type: int
        required: true
  static:
    description: Directories copied out of a service's image for the edge Nginx, again whenever the image changes.
    type: list
    elements: dict
    default: []
    suboptions:
      service:
        description: The service whose image holds them.
        type: str
        required: true
      path:
        description: The URL path (the copy lands in C(static/<service>/<path>)).
        type: str
        required: true
      from_image:
        description: The directory in the image.
        type: str
        required: true
  migrations:
    description: The Compose services (profile C(migrations)) that run this release's migrations, in order.
    type: list
    elements: str
    default: []
  migration_marker:
    description: A line standing for this set of migrations in C(.migrated); a set runs once per host.
    type: str
    default: ""
  migrate:
    description: Run new migrations in the switch (an update ran them once before, with O(action=migrate)).
    type: bool
    default: true
  db_user:
    description: The PostgreSQL role whose password rotates.
    type: str
    default: ""
  db_password:
    description:
      - The PostgreSQL password; set in the running server when it differs from the one it runs with.
      - A rollback (which sends no secret files) leaves the passwords as they are.
    type: str
  redis_password:
    description:
      - The Redis password; added to the running server beside the old one when it differs.
      - A rollback leaves it as it is.
    type: str
  retire_passwords:
    description: After the gate, drop the old Redis passwords (a fleet does it once every app host switched).
    type: bool
    default: false
  data_restart_allowed:
    description: Allow a run that recreates PostgreSQL or Redis (their image or configuration changed).
    type: bool
    default: false
  release:
    description: With O(action=rollback), the release to return to, by id, or V(previous).
    type: str
    default: previous
  images:
    description: Image reference per service, recorded with the release.
    type: dict
    default: {}
  health_timeout:
    description: Seconds new containers (or Swarm's update) have to become healthy.
    type: int
    default: 180
  drain_seconds:
    description:
      - At most this many seconds between the edge switching to new containers and stopping the old ones; they stop
        as soon as no connection to them is open (at least half a second after the switch).
    type: float
    default: 2
  prune:
    description:
      - After a switch that passed (and in check mode, what it would remove), remove what the release history no
        longer needs from the host, and write what went and how much space came back to the audit log.
      - "It removes the project's stopped containers; the images of the repositories the history's releases name
        (O(images) and each release's C(images)) that no release and no container uses, by reference, never by
        force (an image another container uses stays); then Docker's dangling images and build cache
        (C(docker image prune) and C(docker builder prune), host-wide)."
      - Not done on a swarm yet (O(engine=swarm)).
    type: bool
    default: true
  pull:
    description: When Compose may pull an image a container needs (the images were pulled before the switch).
    type: str
    choices: [missing, always, never]
    default: missing
  gate:
    description: The health gate's HTTP part, asked on this host after the containers changed.
    type: dict
    default: {}
    suboptions:
      url:
        description: URL through the edge Nginx; empty skips this part.
        type: str
        default: ""
      successes:
        description: Good answers in a row wanted.
        type: int
        default: 5
      timeout:
        description: Seconds to get them.
        type: int
        default: 60
      expect:
        description: Text a good answer's body contains; C({version}) stands for the release's version.
        type: str
        default: ""
  min_free_mb:
    description: With O(action=preflight), the free space wanted under /var/lib/docker.
    type: int
    default: 0
  placement:
    description: With O(engine=swarm), placement constraints per service.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Reports which files would change and which services would roll; writes nothing, takes no lock.
  diff_mode:
    support: full
    description: Shows the project files (not the secret files) and, on a swarm, the stack before and after.
notes:
  - The logic lives in C(module_utils/app_switch.py) (the switch) and the engines; this module only declares its
    arguments.
"""

EXAMPLES = r"""
- name: Deploy the rendered release
  selfhost.stack.app_switch:
    project_dir: /opt/shop
    name: shop
    version: "1.4.2"
    files:
      - {path: compose.yaml, content: "{{ lookup('ansible.builtin.template', 'compose.yaml.j2') }}", mode: "0640"}
      - {path: .env, content: "{{ lookup('ansible.builtin.template', 'env.j2') }}", mode: "0640"}
    secret_files:
      - {service: api, name: session_key, content: "{{ vault_session_key }}", owner: "1000", group: "1000"}
    services: [api, nginx, postgres, redis]
    routed: [api]
    pools: [{service: api, pool: api_pool, port: 8000}]
    gate: {url: "http://127.0.0.1/api/health"}

- name: Roll back to the previous release
  selfhost.stack.app_switch:
    project_dir: /opt/shop
    name: shop
    action: rollback
    release: previous
    services: [api, nginx, postgres, redis]
    routed: [api]
    pools: [{service: api, pool: api_pool, port: 8000}]
    gate: {url: "http://127.0.0.1/api/health"}
"""

RETURN = r"""
action:
  description: The action run.
  returned: always
  type: str
  sample: deploy
before:
  description: The current release before the switch (null on a first deploy).
  returned: deploy, update and rollback
  type: str
  sample: 20261122T101500Z-1.4.1
current:
  description: The current release after the switch.
  returned: when the switch (or its revert) passed the gate
  type: str
  sample: 20261122T101500Z-1.4.2
changes:
  description: What the run changed, one line each (services rolled and why, files, migrations, static files).
  returned: always
  type: list
  elements: str
  sample: ["frontend: demo-frontend-2 started beside demo-frontend-1"]
files:
  description: The project files that changed (check mode).
  returned: check mode
  type: list
  elements: str
drained_after_s:
  description: Seconds from the edge's switch until the old containers served no request (at most O(drain_seconds)).
  returned: when old containers drained
  type: float
  sample: 0.6
gate:
  description: What the health gate saw.
  returned: when the gate asked the edge
  type: str
pruned:
  description: Releases deleted from the history.
  returned: when a release was recorded
  type: list
  elements: str
pruned_images:
  description: Image references removed from the host (in check mode, those it would remove), see O(prune).
  returned: when O(prune) removed something
  type: list
  elements: str
  sample: ["registry.example.com/shop/api:1.3.9"]
reverted_to:
  description: The release the host went back to after a failure.
  returned: on failure, after a revert
  type: str
failed_check:
  description: The step that failed and its message.
  returned: on failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.stack.plugins.module_utils.app_switch import Switch
from ansible_collections.selfhost.stack.plugins.module_utils.engine import SwitchFailed
from ansible_collections.selfhost.stack.plugins.module_utils.engine_compose import ComposeEngine
from ansible_collections.selfhost.stack.plugins.module_utils.engine_swarm import SwarmEngine

ENGINES = {"compose": ComposeEngine, "swarm": SwarmEngine}


def argument_spec():
    return dict(
        project_dir=dict(type="path", required=True),
        name=dict(type="str", required=True),
        engine=dict(type="str", default="compose", choices=sorted(ENGINES)),
        action=dict(type="str", default="deploy", choices=["deploy", "update", "rollback", "preflight", "migrate", "retire", "check"]),
        host=dict(type="str", default=""),
        version=dict(type="str", default=""),
        actor=dict(type="str", default="unknown"),
        keep=dict(type="int", default=5),
        lock_dir=dict(type="path"),
        lock_force=dict(type="bool", default=False),
        files=dict(type="list", elements="dict", default=[], options=dict(
            path=dict(type="str", required=True),
            content=dict(type="str", required=True),
            mode=dict(type="str", default="0644"),
        )),
        # no_log on each file's content only: the names and owners are no secret.
        secret_files=dict(type="list", elements="dict", default=[], no_log=False, options=dict(
            service=dict(type="str", required=True),
            name=dict(type="str", required=True),
            content=dict(type="str", required=True, no_log=True),
            owner=dict(type="str"),
            group=dict(type="str"),
        )),
        services=dict(type="list", elements="str", default=[]),
        routed=dict(type="list", elements="str", default=[]),
        pools=dict(type="list", elements="dict", default=[], options=dict(
            service=dict(type="str", required=True),
            pool=dict(type="str", required=True),
            port=dict(type="int", required=True),
        )),
        static=dict(type="list", elements="dict", default=[], options=dict(
            service=dict(type="str", required=True),
            path=dict(type="str", required=True),
            from_image=dict(type="str", required=True),
        )),
        migrations=dict(type="list", elements="str", default=[]),
        migration_marker=dict(type="str", default=""),
        migrate=dict(type="bool", default=True),
        db_user=dict(type="str", default=""),
        db_password=dict(type="str", no_log=True),
        redis_password=dict(type="str", no_log=True),
        retire_passwords=dict(type="bool", default=False),
        data_restart_allowed=dict(type="bool", default=False),
        release=dict(type="str", default="previous"),
        images=dict(type="dict", default={}),
        health_timeout=dict(type="int", default=180),
        drain_seconds=dict(type="float", default=2),
        pull=dict(type="str", default="missing", choices=["missing", "always", "never"]),
        gate=dict(type="dict", default={}, options=dict(
            url=dict(type="str", default=""),
            successes=dict(type="int", default=5),
            timeout=dict(type="int", default=60),
            expect=dict(type="str", default=""),
        )),
        prune=dict(type="bool", default=True),
        min_free_mb=dict(type="int", default=0),
        placement=dict(type="dict", default={}),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if module.params["keep"] < 2:
        module.fail_json(msg="keep must be at least 2 (the current and the previous release)")
    switch = Switch(module, ENGINES[module.params["engine"]], module.params)
    try:
        result = switch.run()
    except SwitchFailed as exc:
        result = dict(switch.result)
        result.setdefault("failed_check", exc.reason())
        result.update((k, v) for k, v in exc.details.items() if k in ("service", "services"))
        module.fail_json(msg=exc.msg, **result)
    except Exception as exc:  # a fault outside a switch (preflight, migrate, retire): its words, no traceback
        module.fail_json(msg="%s: %s" % (type(exc).__name__, exc), **switch.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
