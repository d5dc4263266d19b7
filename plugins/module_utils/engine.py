# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the app role's switch (module_utils.app_switch) needs from the thing that runs the
containers. One interface, two implementations: engine_compose (Docker Compose on each host)
and engine_swarm (one stack on a Docker Swarm, from a manager). The switch never asks which
engine it has; everything that differs between them lives behind these methods."""

from __future__ import annotations

import os
import shutil
import time

from ansible_collections.selfhost.stack.plugins.module_utils import file_set


# The password files PostgreSQL and Redis read when they start (below secrets/).
PASSWORD_FILES = ("postgres/db_password", "redis/redis.conf")
# Copies of them as the running servers know them, while a switch changes them.
HELD_DIR = "secrets/.running"


def held_path(path):
    return "%s/%s" % (HELD_DIR, path.replace("/", "-"))


class SwitchFailed(Exception):
    """A step of the switch failed. `check` names the step (the audit log's reason starts with
    it), `msg` says what happened in the words of the tool that failed."""

    def __init__(self, check, msg, **details):
        super(SwitchFailed, self).__init__(msg)
        self.check = check
        self.msg = msg
        self.details = details

    def reason(self):
        return "%s: %s" % (self.check, self.msg)


class Docker(object):
    """The docker CLI on this host, run from the project directory."""

    def __init__(self, module, cwd):
        self.module = module
        self.cwd = cwd

    def __call__(self, *args, **kwargs):
        """(rc, stdout, stderr) of `docker ARGS`. With check (the default) a failure raises
        SwitchFailed naming `step`. `data` goes to stdin (passwords: never in argv)."""
        check = kwargs.pop("check", True)
        step = kwargs.pop("step", "docker %s" % " ".join(args[:2]))
        rc, out, err = self.module.run_command(["docker"] + list(args), cwd=self.cwd, **kwargs)
        if rc != 0 and check:
            raise SwitchFailed(step, "docker %s failed (rc %d): %s" % (
                " ".join(str(a) for a in args[:4]), rc, (err or out).strip()[-1500:]))
        return rc, out, err


def wait_until(predicate, timeout, interval=0.5):
    """Calls predicate() until it returns something true or timeout seconds passed; returns the
    last value (false on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Rollout(object):
    """What converge() did: the containers that still drain, when the edge last switched, and
    which services changed (and why)."""

    def __init__(self):
        self.changed = []      # "service: what was done" lines
        self.stale = []        # old containers (or tasks) that still drain
        self.switched_at = None  # time.monotonic() of the last edge reload
        self.drained = None  # seconds from that reload until the old containers served no request

    def note(self, line):
        self.changed.append(line)


class Engine(object):
    """The interface. `params` are the app_switch module's parameters; `project` the project
    directory's files (module_utils.app_switch.Project)."""

    name = None

    def __init__(self, module, params, project):
        self.module = module
        self.params = params
        self.project = project
        self.check_mode = module.check_mode
        self.docker = Docker(module, params["project_dir"])
        self.running_passwords = {}  # secrets/ path -> the text the running server was given

    # -- the passwords the data services run with ----------------------------------------
    def read_running_passwords(self, paths):
        """PostgreSQL and Redis read their password files only when they start (PostgreSQL only
        when it creates its cluster): what they run with is the file, or, while a switch that
        rewrote it has not changed the running server yet, the copy held before (HELD_DIR)."""
        for path in paths:
            held = self.project.read(held_path(path))
            text = held if held is not None else self.project.read("secrets/" + path)
            if text is not None:
                self.running_passwords[path] = text

    def hold_running_passwords(self, secret_specs):
        """Before the secret files are rewritten: a copy of each password file whose content
        changes, so a run that stops before the server took the new password knows the old one."""
        new = dict((spec["path"], spec["content"]) for spec in secret_specs)
        for path, text in self.running_passwords.items():
            if new.get("secrets/" + path, text) != text and self.project.read(held_path(path)) is None:
                self.project.ensure_directories([(HELD_DIR, 0o700)])
                file_set.write_atomically(self.project.full(held_path(path)), text.encode("utf-8"), 0, 0, 0o400)

    def release_held_passwords(self):
        """The running servers took the new passwords (the switch, or its revert, passed)."""
        if os.path.isdir(self.project.full(HELD_DIR)):
            shutil.rmtree(self.project.full(HELD_DIR))

    # -- before any change -------------------------------------------------------------
    def precheck(self):
        """What the role's validate entry point checks on this host before any role changed
        anything (the engine may not be installed yet). Raises SwitchFailed."""

    def preflight(self):
        """What playbooks/update.yml's preflight refuses for this engine. Raises SwitchFailed."""

    def observe(self):
        """Reads what the running stack uses that the switch is about to replace (the passwords
        PostgreSQL and Redis run with). Called before any file is written."""

    def validate(self, staged):
        """Checks the staged project (a dict path -> content of compose.yaml and .env, written
        to temporary files by the caller: staged['compose'], staged['env']) and refuses what
        must not happen; raises SwitchFailed. Nothing on the host changes."""
        raise NotImplementedError

    def plan(self, files_changed):
        """Check mode: what converge() would change ({service: reason}); files_changed: whether
        the staged compose.yaml or .env differ from the live ones."""
        raise NotImplementedError

    def forget(self):
        """The live files or the containers changed: drop what was read of them."""

    def engine_files(self):
        """Files of the project only this engine writes: [{path, content, mode}] (relative)."""
        return []

    # -- the switch ------------------------------------------------------------------------
    def prepare(self, rollout):
        """Brings the data services up and changes rotated passwords in them."""

    def migrate(self, migrations, marker, files=None):
        """Runs the migrations (compose services) once per marker; files: the compose and env
        file of a release that is not live yet. Returns True when they ran."""
        raise NotImplementedError

    def converge(self, rollout):
        """Brings the running containers to the live project files. Old containers of services
        replaced without downtime are left draining in rollout.stale."""
        raise NotImplementedError

    def finish(self, rollout):
        """Stops what rollout.stale still drains, once app_drain_seconds have passed."""

    def verify(self):
        """The gate's first half: every container of the stack runs (and is healthy where it
        has a healthcheck); raises SwitchFailed."""

    def digests(self):
        """Image ID per service of the running stack, for the release history."""
        return {}

    def prune(self, refs, ids):
        """After a successful switch: removes what the release history no longer needs (refs,
        ids: the image references and IDs of its releases). Returns {containers, images, other},
        or None where the engine does not prune."""
        return None

    def retire_passwords(self):
        """Drops old passwords the data services still accept; True when one was dropped."""
        return False
