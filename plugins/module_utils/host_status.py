# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What one host of the app runs, for playbooks/status.yml: the current release, each service's
containers (or a swarm's services), the last backup, the certificate's expiry, free disk and
uptime. Reads only; every part that cannot be read is None, never an error."""

from __future__ import annotations

import calendar
import json
import os
import re
import time

from ansible_collections.selfhost.stack.plugins.module_utils import releases


def health_of(status):
    """`docker ps`'s Status column: 'healthy', 'unhealthy', 'starting' or '' (no check)."""
    match = re.search(r"\((healthy|unhealthy|health: starting)\)", status or "")
    return "starting" if match and match.group(1) == "health: starting" else (match.group(1) if match else "")


def labels_of(text):
    """`docker ps`'s Labels column (k=v,k=v) as a dict; a value may hold a comma."""
    labels, key = {}, None
    for part in (text or "").split(","):
        if "=" in part and re.match(r"^[A-Za-z0-9_.-]+=", part):
            key, value = part.split("=", 1)
            labels[key] = value
        elif key is not None:
            labels[key] += "," + part
    return labels


def tag_of(image):
    """The tag of an image reference (what the release calls its version), or the reference."""
    name = image.split("@", 1)[0]
    return name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else image


def compose_services(lines):
    """Per service of a Compose project, from `docker ps -a --format '{{json .}}'` lines: how many
    containers run, how many serve (healthy, or running without a check), and their images' tags."""
    services = {}
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        labels = labels_of(row.get("Labels"))
        name = labels.get("com.docker.compose.service")
        if not name or labels.get("com.docker.compose.oneoff") == "True":
            continue
        entry = services.setdefault(name, {"running": 0, "serving": 0, "containers": 0, "versions": []})
        entry["containers"] += 1
        running = row.get("State") == "running"
        health = health_of(row.get("Status"))
        entry["running"] += running
        entry["serving"] += running and health in ("", "healthy")
        version = tag_of(row.get("Image", ""))
        if running and version not in entry["versions"]:
            entry["versions"].append(version)
    return services


def swarm_services(lines, stack):
    """Per service of a stack, from `docker service ls --format '{{json .}}'` lines."""
    services = {}
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        name = row.get("Name", "")
        if not name.startswith(stack + "_"):
            continue
        # "1/2", or "1/1 (max 1 per node)"
        counts = re.match(r"(\d+)/(\d+)", row.get("Replicas") or "")
        running, wanted = (int(counts.group(1)), int(counts.group(2))) if counts else (0, 0)
        services[name[len(stack) + 1:]] = {"running": running, "serving": running, "containers": wanted,
                                           "versions": [tag_of(row.get("Image", ""))]}
    return services


def backup_status(text):
    """The backup role's node_exporter status file: {'last_success': epoch or None, 'ok': bool}."""
    if text is None:
        return None
    values = {}
    for line in text.splitlines():
        match = re.match(r"^(selfhost_backup_[a-z_]+)(\{[^}]*\})?\s+(\S+)$", line.strip())
        if match:
            values[match.group(1)] = float(match.group(3))
    last = values.get("selfhost_backup_last_success_timestamp_seconds")
    return {"last_success": int(last) if last else None, "ok": values.get("selfhost_backup_last_result") == 1.0}


def certificate_expiry(enddate):
    """`openssl x509 -enddate -noout` ('notAfter=Mar  7 12:00:00 2027 GMT') as an epoch, or None."""
    match = re.search(r"notAfter=(.+?)\s*$", enddate or "")
    if not match:
        return None
    try:
        return calendar.timegm(time.strptime(match.group(1).replace("  ", " "), "%b %d %H:%M:%S %Y GMT"))
    except ValueError:
        return None


class HostStatus(object):
    """Reads one host. `run(argv)` returns (rc, stdout, stderr); `now()` the epoch."""

    def __init__(self, run, project_dir, project, engine, deploys_here, backup_file=None, certificates=(),
                 disk_path="/var/lib/docker", now=time.time):
        self.run = run
        self.project_dir = project_dir
        self.project = project
        self.engine = engine
        self.deploys_here = deploys_here
        self.backup_file = backup_file
        self.certificates = list(certificates)
        self.disk_path = disk_path
        self.now = now

    def collect(self):
        release = self.release()
        status = {"release": release.get("id"), "version": release.get("version"), "services": self.services(),
                  "backup": backup_status(self.read(self.backup_file)), "certificate_expires": self.certificate(),
                  "uptime_s": self.uptime()}
        status.update(self.disk())
        return status

    @staticmethod
    def read(path):
        if not path:
            return None
        try:
            with open(path) as f:
                return f.read()
        except (IOError, OSError):
            return None

    def release(self):
        current = releases.current_release(self.project_dir)
        if current is None:
            return {}
        try:
            return {"id": current, "version": releases.read_release(self.project_dir, current).get("version")}
        except (IOError, OSError, ValueError):
            return {}

    def services(self):
        if not os.path.isdir(self.project_dir):
            return {}
        if self.engine == "swarm":
            if not self.deploys_here:
                return {}
            rc, out, _err = self.run(["docker", "service", "ls", "--filter", "label=com.docker.stack.namespace=%s"
                                      % self.project, "--format", "{{json .}}"])
            return swarm_services(out.splitlines(), self.project) if rc == 0 else None
        rc, out, _err = self.run(["docker", "ps", "--all", "--filter", "label=com.docker.compose.project=%s" % self.project,
                                  "--format", "{{json .}}"])
        return compose_services(out.splitlines()) if rc == 0 else None

    def certificate(self):
        for path in self.certificates:
            if path and os.path.isfile(path):
                rc, out, _err = self.run(["openssl", "x509", "-enddate", "-noout", "-in", path])
                return certificate_expiry(out) if rc == 0 else None
        return None

    def uptime(self):
        text = self.read("/proc/uptime")
        try:
            return int(float(text.split()[0])) if text else None
        except (ValueError, IndexError):
            return None

    def disk(self):
        path = self.disk_path if os.path.isdir(self.disk_path) else "/"
        try:
            st = os.statvfs(path)
        except OSError:
            return {"disk_free_bytes": None, "disk_free_pct": None}
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return {"disk_free_bytes": free, "disk_free_pct": round(100.0 * free / total, 1) if total else None}
