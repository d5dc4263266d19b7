# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""HAProxy's runtime API (the admin stats socket): read server states and in-flight sessions,
drain and undrain servers without a reload. No Ansible imports, so it is unit tested alone.

HAProxy closes the connection after each command (non-interactive mode): one command, one
connection, the answer is everything read until EOF.
"""

from __future__ import annotations

import csv
import io
import socket
import time

# srv_admin_state bits of `show servers state` (HAProxy's SRV_ADMF_*).
ADMIN_FORCED_MAINT = 0x01
ADMIN_INHERITED_MAINT = 0x02
ADMIN_CONFIG_MAINT = 0x04
ADMIN_FORCED_DRAIN = 0x08
ADMIN_INHERITED_DRAIN = 0x10
ADMIN_RESOLUTION_MAINT = 0x20
ADMIN_HEALTH_MAINT = 0x40
ADMIN_MAINT = ADMIN_FORCED_MAINT | ADMIN_INHERITED_MAINT | ADMIN_CONFIG_MAINT | ADMIN_RESOLUTION_MAINT | ADMIN_HEALTH_MAINT

# srv_op_state of `show servers state` (HAProxy's SRV_ST_*).
OP_STATES = {0: "down", 1: "starting", 2: "up", 3: "stopping"}


class HAProxyError(Exception):
    """HAProxy refused a command or could not be reached."""


class RuntimeAPI:
    """One HAProxy process' admin socket (a Unix socket path)."""

    def __init__(self, path, timeout=5.0):
        self.path = path
        self.timeout = timeout

    def command(self, line):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.path)
            except OSError as exc:
                raise HAProxyError("cannot reach HAProxy's runtime API at %s: %s" % (self.path, exc))
            sock.sendall(line.encode("utf-8") + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            sock.close()
        return b"".join(chunks).decode("utf-8", "replace")

    def servers(self, backend):
        """{server name: Server} of one backend, from `show servers state`."""
        out = self.command("show servers state %s" % backend)
        return parse_servers_state(out, backend)

    def sessions(self, backend):
        """{server name: requests in flight or queued} of one backend, from `show stat`."""
        return parse_stat_sessions(self.command("show stat"), backend)

    def set_state(self, backend, server, state):
        out = self.command("set server %s/%s state %s" % (backend, server, state)).strip()
        if out:  # HAProxy answers nothing on success
            raise HAProxyError("HAProxy refused 'set server %s/%s state %s': %s" % (backend, server, state, out))


class Server:
    def __init__(self, name, address, op_state, admin_state):
        self.name = name
        self.address = address
        self.op_state = op_state
        self.admin_state = admin_state

    @property
    def drained(self):
        return bool(self.admin_state & ADMIN_FORCED_DRAIN) and not self.admin_state & ADMIN_FORCED_MAINT

    @property
    def ready(self):
        return not self.admin_state & (ADMIN_FORCED_DRAIN | ADMIN_FORCED_MAINT)

    @property
    def in_rotation(self):
        """Takes new requests: up by its health checks, neither drained nor in maintenance."""
        return self.op_state == 2 and not self.admin_state & (ADMIN_MAINT | ADMIN_FORCED_DRAIN | ADMIN_INHERITED_DRAIN)

    @property
    def serves_once_ready(self):
        """Would take new requests once made ready (what `state ready` cannot clear aside)."""
        kept = (ADMIN_MAINT & ~ADMIN_FORCED_MAINT) | ADMIN_INHERITED_DRAIN
        return self.op_state == 2 and not self.admin_state & kept

    def describe(self):
        if self.admin_state & ADMIN_MAINT:
            admin = "maint"
        elif self.admin_state & (ADMIN_FORCED_DRAIN | ADMIN_INHERITED_DRAIN):
            admin = "drain"
        else:
            admin = "ready"
        return {"address": self.address, "admin": admin, "health": OP_STATES.get(self.op_state, str(self.op_state))}


def parse_servers_state(text, backend):
    """Parse `show servers state` (format version 1) into {name: Server}, for one backend."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].strip().isdigit():
        raise HAProxyError("unexpected answer to 'show servers state %s': %s" % (backend, text.strip()[:300]))
    header = None
    servers = {}
    for line in lines[1:]:
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            continue
        if header is None:
            raise HAProxyError("'show servers state' gave no header line: %s" % text.strip()[:300])
        row = dict(zip(header, line.split()))
        if row.get("be_name") != backend:
            continue
        servers[row["srv_name"]] = Server(row["srv_name"], row.get("srv_addr", "-"),
                                          int(row["srv_op_state"]), int(row["srv_admin_state"]))
    return servers


def parse_stat_sessions(text, backend):
    """{server: current sessions + queued requests} of one backend from `show stat` CSV."""
    body = text.lstrip("# ")
    sessions = {}
    for row in csv.DictReader(io.StringIO(body)):
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        sessions[row["svname"]] = int(row.get("scur") or 0) + int(row.get("qcur") or 0)
    return sessions


class PoolError(Exception):
    pass


def admin_diff(servers, to_drain, to_ready, backend):
    """Ansible's diff of a pool change: each server's admin state (ready, drain, maint) before and after."""
    before = {n: s.describe()["admin"] for n, s in servers.items()}
    after = dict(before, **{n: "drain" for n in to_drain})
    after.update((n, "ready") for n in to_ready)

    def text(states):
        return "".join("%s %s\n" % (n, states[n]) for n in sorted(states))
    return {"before": text(before), "after": text(after),
            "before_header": "backend %s (before)" % backend, "after_header": "backend %s (after)" % backend}


class Pool:
    """Makes a backend's drained set what the caller asks, then waits for drained servers to go idle.

    `drained` servers get `state drain` (no new requests; requests in flight finish; health checks
    go on), every other server of the backend `state ready`. Nothing else is touched: health is
    HAProxy's business.
    """

    def __init__(self, api, backend, clock=time.monotonic, sleep=time.sleep):
        self.api = api
        self.backend = backend
        self.clock = clock
        self.sleep = sleep

    def plan(self, servers, drained):
        unknown = sorted(set(drained) - set(servers))
        if unknown:
            raise PoolError("backend %s has no server %s (servers: %s)" % (
                self.backend, ", ".join(unknown), ", ".join(sorted(servers)) or "none"))
        to_drain = sorted(n for n in drained if not servers[n].drained)
        to_ready = sorted(n for n, s in servers.items() if n not in drained and not s.ready)
        return to_drain, to_ready

    def apply(self, drained, keep_serving=True, drain_timeout=30.0, check_mode=False):
        servers = self.api.servers(self.backend)
        to_drain, to_ready = self.plan(servers, drained)
        remaining = [s for n, s in servers.items() if n not in drained]
        if to_drain and keep_serving and not any(s.serves_once_ready for s in remaining):
            states = ", ".join("%s %s/%s" % (n, d["admin"], d["health"])
                               for n, d in sorted((n, s.describe()) for n, s in servers.items()))
            raise PoolError("draining %s would leave no server of backend %s taking requests (%s)" % (
                ", ".join(to_drain), self.backend, states or "no servers"))
        result = {"drained": to_drain, "readied": to_ready, "waited_s": 0.0, "in_flight": {},
                  "diff": admin_diff(servers, to_drain, to_ready, self.backend)}
        if check_mode:
            result["servers"] = {n: s.describe() for n, s in servers.items()}
            return result
        # Ready first: a server coming back takes requests before another one leaves.
        for name in to_ready:
            self.api.set_state(self.backend, name, "ready")
        for name in to_drain:
            self.api.set_state(self.backend, name, "drain")
        if drained:
            result["waited_s"], result["in_flight"] = self.wait_idle(drained, drain_timeout)
        result["servers"] = {n: s.describe() for n, s in self.api.servers(self.backend).items()}
        return result

    def wait_idle(self, names, timeout, interval=0.1):
        """Wait until `names` have no request in flight or queued, at most `timeout` seconds.

        Returns (seconds waited, {name: requests still in flight} for those that did not finish).
        """
        start = self.clock()
        while True:
            busy = {n: c for n, c in self.api.sessions(self.backend).items() if n in names and c > 0}
            waited = self.clock() - start
            if not busy or waited >= timeout:
                return round(waited, 2), busy
            self.sleep(interval)
