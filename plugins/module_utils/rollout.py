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


class Container(object):
    def __init__(self, name, state, health, number=0):
        self.name = name
        self.state = state
        self.health = health
        self.number = int(number or 0)

    @classmethod
    def from_inspect(cls, data):
        labels = data.get("Config", {}).get("Labels") or {}
        state = data.get("State", {})
        return cls(data.get("Name", "").lstrip("/"), state.get("Status", ""), (state.get("Health") or {}).get("Status"), labels.get(NUMBER_LABEL))

    @property
    def serving(self):
        """Running, and healthy when the image has a healthcheck."""
        return self.state == "running" and self.health in (None, "healthy")

    def __repr__(self):
        return "Container(%s, %s, %s)" % (self.name, self.state, self.health)


def render_upstreams(pools):
    """Nginx upstream blocks. pools: list of (pool name, port, [container names])."""
    lines = ["# Managed by selfhost.stack: the containers Nginx sends traffic to, by name."]
    for pool, port, names in pools:
        lines.append("upstream %s {" % pool)
        for name in sorted(names):
            lines.append("    server %s:%d max_fails=0;" % (name, port))
        lines.append("}")
        lines.append("")
    return "\n".join(lines)
