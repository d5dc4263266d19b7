# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Docker Swarm stack of a rendered Compose project (module_utils.compose_render).

`docker stack deploy` (docker/cli 26, compose schema 3.12) reads the Compose format with other
rules: it rejects a top-level `name`, `profiles` and `depends_on` conditions; it ignores
`security_opt`, `shm_size`, `tmpfs` lists and the host address of a published port (which then
listens on every address); it does not read `.env`; and a secret or config cannot change in
place. This module turns the project into a stack that means the same: literal image references,
tmpfs mounts, host-mode ports, restart and update policies under `deploy`, and secrets and
configs named after a hash of their content, so changing one is a rolling update. What both read
alike passes unchanged, such as an application service's `stop_grace_period` (how long Swarm
waits between SIGTERM and SIGKILL when it stops a task).

Pure data in, data out.
"""

from __future__ import annotations

import re

from ansible_collections.selfhost.stack.plugins.module_utils.compose_render import RenderError

# What a stack document may not carry at the top level or per service (rejected by the schema or
# meaningless in swarm mode; the daemon's own no-new-privileges covers security_opt).
DROPPED_TOP = ("name",)
DROPPED_SERVICE = ("restart", "depends_on", "security_opt", "tmpfs", "shm_size", "profiles", "ports")
VARIABLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
# Docker's limit for secret and config names.
NAME_MAX = 64


def versioned(stack, key, digest):
    """`<stack>_<key>_<12 hex>`: a new name for new content (Swarm cannot update one in place)."""
    suffix = "_" + digest[:12]
    base = ("%s_%s" % (stack, key))[:NAME_MAX - len(suffix)].rstrip("_.-")
    return base + suffix


def literal_image(image, images):
    """The reference an `${X_IMAGE}` variable stands for (the stack CLI reads no .env file)."""
    match = VARIABLE.match(image)
    if not match:
        return image
    if match.group(1) not in images:
        raise RenderError("no image reference for %s" % match.group(1))
    return images[match.group(1)]


def literal_labels(labels, env):
    """Labels with their `${X}` references resolved from .env (the selfhost.secrets-hash label
    names the variable the switch writes there)."""
    return dict((key, literal_image(value, env) if isinstance(value, str) else value) for key, value in labels.items())


def restart_policy(restart):
    """Compose's restart value as a swarm restart policy ("no" would be swarm's default, any)."""
    return {"condition": "none" if restart in ("no", False, None) else "any", "delay": "2s"}


def monitor_seconds(healthcheck):
    """How long Swarm watches a new task before it counts the update good: the time its
    healthcheck needs to declare it unhealthy, or 10 s when the service has none."""
    if not healthcheck or healthcheck.get("disable"):
        return 10
    return int(duration_seconds(healthcheck["interval"]) * int(healthcheck["retries"])
               + duration_seconds(healthcheck.get("start_period", "0s")))


def duration_seconds(value):
    match = re.match(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$", str(value))
    if not match:
        raise RenderError("not a duration: %r" % (value,))
    number, unit = float(match.group(1)), match.group(2)
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def port(spec, mode):
    """A Compose short port ("addr:published:target") as a long-syntax swarm port."""
    parts = str(spec).split(":")
    if len(parts) == 3 and parts[0] not in ("", "0.0.0.0"):
        raise RenderError("port %s: a swarm publishes on every address of its nodes, not on %s only"
                          % (spec, parts[0]))
    published, target = parts[-2], parts[-1]
    return {"target": int(target), "published": int(published), "protocol": "tcp", "mode": mode}


def update_config(order, monitor):
    return {"parallelism": 1, "delay": "0s", "order": order, "failure_action": "rollback",
            "monitor": "%ds" % monitor, "max_failure_ratio": 0}


def service(name, spec, ctx):
    out = dict((k, v) for k, v in spec.items() if k not in DROPPED_SERVICE)
    out["image"] = literal_image(spec["image"], ctx["images"])
    if spec.get("labels"):
        out["labels"] = literal_labels(spec["labels"], ctx["images"])
    mounts = [v for v in spec.get("volumes", []) if not (isinstance(v, str) and v.startswith("./"))]
    binds = [v for v in spec.get("volumes", []) if isinstance(v, str) and v.startswith("./")]
    for bind in binds:
        if bind.split(":")[0] not in ctx.get("configs", {}):
            raise RenderError("services.%s: %s is a directory of the manager, not of every node" % (name, bind))
    for path in spec.get("tmpfs", []):
        mounts.append({"type": "tmpfs", "target": path})
    if spec.get("shm_size"):
        mounts.append({"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": size_bytes(spec["shm_size"])}})
    if mounts:
        out["volumes"] = mounts
    else:
        out.pop("volumes", None)
    configs = []
    for bind in binds:
        source, target = bind.split(":")[0], bind.split(":")[1]
        for filename, entry in sorted(ctx["configs"][source].items()):
            configs.append({"source": entry["key"], "target": "%s/%s" % (target, filename), "mode": entry.get("mode", 0o444)})
    if configs:
        out["configs"] = configs
    if spec.get("secrets"):
        out["secrets"] = [dict(s, uid="0", gid="0", mode=0o400) if s["source"] not in ctx.get("secret_owners", {})
                          else dict(s, uid=ctx["secret_owners"][s["source"]][0],
                                    gid=ctx["secret_owners"][s["source"]][1], mode=0o400)
                          for s in spec["secrets"]]
    if spec.get("ports"):
        out["ports"] = [port(p, ctx.get("publish_mode", "ingress")) for p in spec["ports"]]
    deploy = dict(out.get("deploy") or {})
    deploy["restart_policy"] = restart_policy(spec.get("restart"))
    singleton = name in ctx.get("singletons", ()) or name not in ctx.get("routed", ())
    order = "stop-first" if singleton else "start-first"
    monitor = monitor_seconds(spec.get("healthcheck"))
    deploy["update_config"] = update_config(order, monitor)
    deploy["rollback_config"] = dict(update_config(order, monitor), failure_action="pause")
    if ctx.get("endpoint_mode"):
        deploy["endpoint_mode"] = ctx["endpoint_mode"]
    constraints = (ctx.get("placement") or {}).get(name)
    if constraints:
        deploy["placement"] = {"constraints": list(constraints)}
    out["deploy"] = deploy
    if name == "postgres":
        # No one restarts the task after initdb, which leaves the password in the server's
        # environment: the start script does (roles/app/files/postgres-start), as root, and
        # signalling the server's user takes CAP_KILL.
        out["environment"] = dict(out.get("environment") or {}, SELFHOST_POSTGRES_RESTART_AFTER_INIT="1")
        out["cap_add"] = sorted(set(out.get("cap_add") or []) | {"KILL"})
    return out


def size_bytes(value):
    match = re.match(r"^(\d+)([kmg]?)b?$", str(value).lower())
    if not match:
        raise RenderError("not a size: %r" % (value,))
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[match.group(2)]


def stack(project, ctx):
    """The stack document of a compose_render project. ctx keys:
    stack (name), images ({VAR: reference}), routed (services updated start-first),
    singletons (stop-first even when routed: the edge Nginx, whose host-mode ports a second task
    on the same node cannot bind), secret_hashes ({key: sha256}),
    configs ({"./dir": {filename: {key, sha256, file, mode}}}), secret_owners ({key: (uid, gid)}),
    endpoint_mode (vip or dnsrr), publish_mode (ingress or host), placement ({service: [constraints]})."""
    services = {}
    for name, spec in project["services"].items():
        if "migrations" in (spec.get("profiles") or []):
            continue  # one-off jobs the role runs itself before the stack deploy
        services[name] = service(name, spec, ctx)
    doc = {"services": services}
    networks = {}
    for key, net in (project.get("networks") or {}).items():
        networks[key] = dict(net, driver="overlay")
    if networks:
        doc["networks"] = networks
    if project.get("volumes"):
        doc["volumes"] = project["volumes"]
    secrets = {}
    for key, entry in sorted((project.get("secrets") or {}).items()):
        digest = (ctx.get("secret_hashes") or {}).get(key)
        if not digest:
            raise RenderError("no content hash for secret %s" % key)
        secrets[key] = {"file": entry["file"], "name": versioned(ctx["stack"], key, digest)}
    if secrets:
        doc["secrets"] = secrets
    configs = {}
    for directory in sorted(ctx.get("configs") or {}):
        for filename, entry in sorted(ctx["configs"][directory].items()):
            configs[entry["key"]] = {"file": entry["file"], "name": versioned(ctx["stack"], entry["key"], entry["sha256"])}
    if configs:
        doc["configs"] = configs
    return doc
