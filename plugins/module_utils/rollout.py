# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Zero-downtime rollout of Compose services behind Nginx: the parts without I/O.

A service rolls by starting containers of the new configuration beside the old ones
(`docker compose up --no-recreate --scale`), waiting until they are healthy, pointing Nginx's
upstream pool at them (a graceful reload lets requests in flight finish), then stopping the
old ones. The same steps bring a half-finished or failed rollout back to the rendered state.
"""

from __future__ import annotations

NUMBER_LABEL = "com.docker.compose.container-number"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# Compose labels each container with the hash of its service's configuration and the ID of the
# image it was created from; `up` recreates a container when either differs from the project's.
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
IMAGE_LABEL = "com.docker.compose.image"
ANY_IMAGE = "any"  # out_of_date's image_id for a service without an image reference


class Container(object):
    def __init__(self, name, state, health, number=0, service=None, config_hash=None, image_id=None, oneoff=False,
                 cid=None, pid=0):
        self.name = name
        self.id = cid or name
        self.pid = int(pid or 0)
        self.state = state
        self.health = health
        self.number = int(number or 0)
        self.service = service
        self.config_hash = config_hash
        self.image_id = image_id
        self.oneoff = oneoff

    @classmethod
    def from_inspect(cls, data):
        labels = data.get("Config", {}).get("Labels") or {}
        state = data.get("State", {})
        return cls(data.get("Name", "").lstrip("/"), state.get("Status", ""), (state.get("Health") or {}).get("Status"),
                   labels.get(NUMBER_LABEL), labels.get(SERVICE_LABEL), labels.get(CONFIG_HASH_LABEL),
                   labels.get(IMAGE_LABEL), labels.get(ONEOFF_LABEL) == "True", data.get("Id"), state.get("Pid"))

    @property
    def serving(self):
        """Running, and healthy when the image has a healthcheck."""
        return self.state == "running" and self.health in (None, "healthy")

    def __repr__(self):
        return "Container(%s, %s, %s)" % (self.name, self.state, self.health)


def parse_hashes(text):
    """`docker compose config --hash '*'` output: {service: config hash}."""
    return dict(line.split(None, 1) for line in text.splitlines() if len(line.split(None, 1)) == 2)


def out_of_date(containers, replicas, config_hash, image_id):
    """Why `docker compose up` would touch a service whose containers are `containers`, or ''.

    replicas: the container count the project wants; config_hash: `config --hash` of the service;
    image_id: the ID of the service's image on the host (None when not there: it will be pulled).
    Unhealthy or stopped containers count too: they are not serving.
    """
    if not containers:
        return "no container"
    if len(containers) != replicas:
        return "%d containers, %d wanted" % (len(containers), replicas)
    for c in containers:
        if c.config_hash != config_hash:
            return "%s has another configuration" % c.name
        if image_id != ANY_IMAGE and c.image_id != image_id:
            return "%s runs another image" % c.name
        if not c.serving:
            return "%s is %s" % (c.name, c.state if c.state != "running" else c.health)
    return ""


def leftovers(containers):
    """Names of containers Docker created but never started (or left dead): they block `up`."""
    return [c.name for c in containers if c.state in ("created", "dead")]


def pool_members(containers):
    """The containers a pool sends traffic to: the serving ones, else the running ones, else none."""
    return [c.name for c in containers if c.serving] or [c.name for c in containers if c.state == "running"]


def render_upstreams(pools):
    """Nginx upstream blocks. pools: list of (pool name, port, [container names])."""
    lines = ["# Managed by selfhost.stack: the containers Nginx sends traffic to, by name",
             "# (/selfhost/nginx-start resolves them into the pools Nginx loads)."]
    for pool, port, names in pools:
        lines.append("upstream %s {" % pool)
        for name in sorted(names):
            lines.append("    server %s:%d max_fails=0;" % (name, port))
        lines.append("}")
        lines.append("")
    return "\n".join(lines)


def exec_never_started(rc, err):
    """Whether a failed `docker exec` (`docker compose exec`) failed before its command ran: the
    runtime could not start the process (runc's init under a busy kernel, say). Such a failure
    changed nothing inside the container, so the same exec may be tried again."""
    return rc == 126 and "OCI runtime exec failed" in (err or "")


ESTABLISHED = "01"  # the st column of /proc/net/tcp


def open_connections(tcp_table, port):
    """Connections to `port` that are open (ESTABLISHED) in a /proc/<pid>/net/tcp or tcp6 table:
    requests an old container still serves."""
    count = 0
    for line in (tcp_table or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == ESTABLISHED and fields[1].rsplit(":", 1)[-1] == "%04X" % int(port):
            count += 1
    return count
