# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one switch of the app role. Deploy, update and rollback bring a host (on a swarm: the
stack, from its manager) to a release through the same steps, in one process on the host:

  lock -> stage the release (rendered files, or a recorded release's) -> check it, nothing
  changed yet -> write it -> data services and rotated passwords -> migrations -> converge the
  containers -> health gate -> record the release -> audit, unlock

On a failure after the first change the host goes back to the release it had, which must pass
the gate again; a host with no earlier release stops with the reason. The engine
(module_utils.engine) does everything that differs between Docker Compose and Docker Swarm."""

from __future__ import annotations

import glob
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time

from ansible.module_utils.urls import open_url
from ansible_collections.selfhost.stack.plugins.module_utils import file_set
from ansible_collections.selfhost.stack.plugins.module_utils import releases
from ansible_collections.selfhost.stack.plugins.module_utils.compose_render import image_var, secrets_hash_var
from ansible_collections.selfhost.stack.plugins.module_utils.engine import Rollout, SwitchFailed

# Directories of the project, with their modes (owner root).
DIRECTORIES = (("", 0o750), ("secrets", 0o700), ("nginx", 0o755), ("selfhost", 0o755), ("static", 0o755))
HASH_KEY = "secrets/.hash-key"
EDGE_DIR = "nginx/"
GATE_INTERVAL = 0.1
MAINTENANCE_FILE = EDGE_DIR + "maintenance.inc"
GATE_HEADER = "X-Selfhost-Gate"
DOCKER_ROOT = "/var/lib/docker"
HASHES_COMMENT = ("# Keyed hashes of each service's secrets, its label selfhost.secrets-hash: a changed",
                  "# secret rolls only the services that use it (written by the switch).")
SECRETS_HASH_LINE = re.compile(r"^[A-Z0-9_]+_SECRETS_HASH=")


def parse_env(text):
    """KEY=VALUE lines of the role's .env (no quoting: image references and plain words)."""
    env = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    return env


def secrets_hashes(secret_files, key):
    """Per service, a keyed hash of its secrets: the label that makes a changed secret roll only
    the services that use it. Redis' own password is left out: it changes in the running server.
    PostgreSQL reads its password only when it creates the cluster: no label."""
    contents = {}
    for entry in secret_files:
        contents.setdefault(entry["service"], []).append(entry["content"])
    hashes = {}
    for service, texts in contents.items():
        if service == "postgres":
            continue
        text = re.sub(r"(?m)^requirepass .*$", "", texts[0]) if service == "redis" else "\n".join(texts)
        hashes[service] = hashlib.sha256((key + text).encode("utf-8")).hexdigest()
    return hashes


def maintenance_token(text):
    """The token nginx/maintenance.inc (playbooks/maintenance.yml) sets, or None: the edge lets
    a request that sends it back (GATE_HEADER) through to the application."""
    match = re.search(r'^set \$selfhost_maintenance "([0-9a-f]+)";$', text or "", re.M)
    return match.group(1) if match else None


def http_gate(url, wanted, timeout, expect, interval=GATE_INTERVAL, headers=None):
    """`wanted` good answers in a row from url within timeout seconds: a 2xx whose body contains
    expect. Returns a line for the report; raises SwitchFailed."""
    deadline, streak, last = time.monotonic() + timeout, 0, "no answer yet"
    while streak < wanted:
        if time.monotonic() > deadline:
            raise SwitchFailed("Wait for consecutive good answers through Nginx",
                               "health gate: %d good answers in a row wanted from %s within %ss; last: %s"
                               % (wanted, url, timeout, last))
        try:
            # Its own host's 127.0.0.1: no certificate to verify.
            with open_url(url, timeout=3, validate_certs=False, use_proxy=False, headers=headers) as answer:
                body = answer.read().decode("utf-8", "replace")
            ok = expect in body
            last = body[:200] if ok else "answer without %r: %s" % (expect, body[:200])
        except Exception as exc:  # any failure of the request is a bad answer
            ok, last = False, "%s: %s" % (type(exc).__name__, str(exc)[:200])
        streak = streak + 1 if ok else 0
        if streak < wanted:
            time.sleep(interval)
    return "health gate passed: %d good answers in a row from %s" % (wanted, url)


class Project(object):
    """The files of the project directory."""

    def __init__(self, path, check_mode):
        self.path = path
        self.check_mode = check_mode
        self.diffs = []
        self.changed_files = []
        self.edge_changed = False

    def full(self, rel):
        return os.path.join(self.path, rel)

    def exists(self):
        return os.path.isdir(self.path)

    def read(self, rel):
        try:
            with open(self.full(rel)) as f:
                return f.read()
        except (IOError, OSError):
            return None

    def env(self):
        return parse_env(self.read(".env"))

    def record_diff(self, path, before, after):
        self.diffs.append({"before_header": path, "after_header": path, "before": before, "after": after})

    def ensure_directories(self, extra=()):
        """The project's directories with their modes (root-owned); True when one changed."""
        changed = False
        for rel, mode in tuple(DIRECTORIES) + tuple(extra):
            path = self.full(rel) if rel else self.path
            if os.path.isdir(path):
                info = os.stat(path)
                if (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (mode, 0, 0):
                    continue
            changed = True
            if not self.check_mode:
                if not os.path.isdir(path):
                    os.makedirs(path, mode)
                os.chown(path, 0, 0)
                os.chmod(path, mode)
        return changed

    def write_files(self, specs, secret=False):
        """[{path (relative), content, mode, owner, group}] to their state; the changed paths."""
        absolute = [dict(spec, path=self.full(spec["path"]), owner=spec.get("owner") or "0",
                         group=spec.get("group") or "0", mode=spec.get("mode") or "0644") for spec in specs]
        try:
            _changed, results = file_set.FileSet(self.check_mode).run(absolute)
        except (file_set.FileSetError, OSError) as exc:
            raise SwitchFailed("Write the project files", str(exc))
        changed = []
        for result in results:
            if not result["changed"]:
                continue
            rel = os.path.relpath(result["path"], self.path)
            changed.append(rel)
            if rel.startswith(EDGE_DIR):
                self.edge_changed = True
            if not secret and "content" in result["changes"]:
                self.record_diff(result["path"], result["before"], result["after"])
        self.changed_files.extend(changed)
        return changed

    def write(self, rel, content, mode):
        """One file, as write_files; True when it changed."""
        return bool(self.write_files([{"path": rel, "content": content, "mode": "%04o" % mode}]))

    def append_line(self, rel, line):
        if not self.check_mode:
            with open(self.full(rel), "a") as f:
                f.write(line + "\n")
            os.chmod(self.full(rel), 0o644)

    def hash_key(self):
        """The key secret hashes are made with, created on the first deploy (0400 root)."""
        key = self.read(HASH_KEY)
        if key is not None:
            return key
        key = "".join(random.SystemRandom().choice(string.ascii_letters + string.digits) for _i in range(32))
        if not self.check_mode:
            file_set.write_atomically(self.full(HASH_KEY), key.encode("utf-8"), 0, 0, 0o400)
        return key


def free_bytes(path):
    """Free bytes of the file system at path (0 when it is not there)."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def process_start(pid):
    """The start time of a process (field 22 of /proc/<pid>/stat), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (IOError, OSError, IndexError, ValueError):
        return None


def process_tree(pid):
    """pid and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (IOError, OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


class Lock(object):
    """One deploy at a time per host: mkdir is atomic, so a second deploy finds the lock and stops.
    The holder's pid is kept beside its name: a switch goes on when its controller dies (nothing
    on the host stops it), and app_lock_force stops it before breaking the lock."""

    def __init__(self, path, host, force):
        self.path = path
        self.host = host
        self.force = force
        self.taken = False

    def read(self, name):
        try:
            with open(os.path.join(self.path, name)) as f:
                return f.read().strip()
        except (IOError, OSError):
            return ""

    def refusal(self):
        return ("%s: another deploy holds the lock %s (%s). If that deploy is dead, run again with -e app_lock_force=true."
                % (self.host, self.path, self.read("owner") or "owner unknown"))

    def stop_holder(self):
        """Stops a holder that still runs on this host (the same pid and start time)."""
        pid, _sep, started = self.read("pid").partition(" ")
        if not pid.isdigit() or int(pid) == os.getpid() or process_start(int(pid)) != started:
            return
        for member in process_tree(int(pid)):
            try:
                os.kill(member, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while process_start(int(pid)) == started and time.monotonic() < deadline:
            time.sleep(0.1)

    def take(self, owner):
        if self.force and os.path.isdir(self.path):
            self.stop_holder()
            shutil.rmtree(self.path)
        try:
            os.mkdir(self.path)
        except OSError:
            if os.path.isdir(self.path):
                raise SwitchFailed("Take the deploy lock", self.refusal(), before_change=True, locked=True)
            raise
        self.taken = True
        try:
            with open(os.path.join(self.path, "owner"), "w") as f:
                f.write(owner + "\n")
            with open(os.path.join(self.path, "pid"), "w") as f:
                f.write("%d %s\n" % (os.getpid(), process_start(os.getpid())))
        except Exception:
            self.release()  # a full disk: no lock left that only app_lock_force breaks
            raise

    def release(self):
        if self.taken:
            shutil.rmtree(self.path, ignore_errors=True)
            self.taken = False


class Switch(object):
    """One run of the app_switch module: params as its argument spec."""

    def __init__(self, module, engine_class, params):
        self.module = module
        self.p = params
        self.check_mode = module.check_mode
        self.project = Project(params["project_dir"], self.check_mode)
        self.engine = engine_class(module, params, self.project)
        self.host = params["host"] or socket.gethostname()
        self.hostname = socket.gethostname()
        self.rollout = Rollout()
        self.before = None
        self.target = None  # the release a rollback returns to
        self.changing = False  # set right before the first write: only from there on is there anything to revert
        self.rotates = params["action"] != "rollback"  # a rollback keeps the secrets and passwords as they are
        self.directories_changed = False
        self.result = {"changed": False, "action": params["action"], "changes": self.rollout.changed, "timings": {}}
        self.started = time.monotonic()

    def timed(self, step):
        """Seconds since the switch started, per step, in the result (a run's cost, for ops and benchmarks)."""
        self.result["timings"][step] = round(time.monotonic() - self.started, 2)

    # -- the entry points ------------------------------------------------------------------
    def run(self):
        action = self.p["action"]
        if action == "preflight":
            self.preflight()
        elif action == "migrate":
            self.migrate_next()
        elif action == "check":
            self.engine.precheck()
        elif action == "retire":
            self.result["changed"] = not self.check_mode and self.engine.retire_passwords()
        else:
            self.switch()
        if self.project.diffs:
            self.result["diff"] = self.project.diffs
        return self.result

    def switch(self):
        if self.p["action"] == "update":
            self.refuse_update()
        lock = self.lock()
        if not self.check_mode:
            # The lock and the hash key live there; another role may have made the project
            # directory already (the proxy role its tls/).
            self.directories_changed = self.project.ensure_directories()
            self.take(lock, "version %s" % self.p["version"])
            self.clear_leftovers()
        outcome, failure = "failed", None
        try:
            self.before = releases.current_release(self.project.path) if self.project.exists() else None
            self.result["before"] = self.before
            self.audit_event("start")
            try:
                self.apply()
                outcome = "ok"
            except SwitchFailed as exc:
                failure = exc
                if not self.changing:
                    raise
                self.revert(exc)
            except Exception as exc:  # a fault of the host (a full disk, a bug): back all the same
                failure = SwitchFailed("The switch", "%s: %s" % (type(exc).__name__, exc))
                if not self.changing:
                    raise failure
                self.revert(failure)
        finally:
            try:
                self.drop_static()
                if failure is not None or outcome != "ok":
                    self.result["failed_check"] = failure.reason() if failure else ""
                self.audit_event("end", outcome, failure)
            finally:
                lock.release()

    def lock(self):
        return Lock(self.p["lock_dir"] or self.project.full(".deploy.lock"), self.host, self.p["lock_force"])

    def take(self, lock, what):
        lock.take("%s since %s, %s" % (self.p["actor"], releases.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), what))

    # -- the steps ---------------------------------------------------------------------------
    def staged_files(self):
        """The release this run switches to: {relative path: spec}, the secret files apart."""
        if self.p["action"] == "rollback":
            target = self.p["release"]
            known = releases.list_releases(self.project.path) if self.project.exists() else []
            if target == "previous":
                target = releases.previous_release(self.project.path)
                if target is None:
                    raise SwitchFailed("Restore the files of the release to return to", "%s has no previous release to "
                                       "return to (releases: %s)" % (self.host, ", ".join(known) or "none"),
                                       before_change=True)
            if target not in known:
                raise SwitchFailed("Restore the files of the release to return to", "no release %s in %s/releases (known: %s)" % (
                    target, self.project.path, ", ".join(known) or "none"), before_change=True)
            self.target = target
            self.result["release_to"] = target
            base = os.path.join(releases.releases_dir(self.project.path), target)
            files = {}
            for name in releases.RELEASE_FILES:
                with open(os.path.join(base, name)) as f:
                    files[name] = {"path": name, "content": f.read(), "mode": "0640"}
            return files
        files = dict((spec["path"], dict(spec)) for spec in self.p["files"])
        if ".env" in files and self.p["secret_files"]:
            files[".env"]["content"] = self.with_secrets_hashes(files[".env"]["content"])
        for spec in self.engine.engine_files():
            files.setdefault(spec["path"], spec)
        return files

    def secret_specs(self):
        """Each secret a service uses is a file of its own, 0400 and owned by the user the
        service starts as, so images that run as a non-root user read it and nobody else can."""
        return [{"path": "secrets/%s/%s" % (f["service"], f["name"]), "content": f["content"], "mode": "0400",
                 "owner": f["owner"] or "0", "group": f["group"] or "0"} for f in self.p["secret_files"]]

    def with_secrets_hashes(self, env):
        key = self.project.hash_key()  # in check mode on a host never deployed: a random one, written nowhere
        hashes = secrets_hashes(self.p["secret_files"], key)
        lines = list(HASHES_COMMENT)
        lines += ["%s=%s" % (secrets_hash_var(s), h) for s, h in sorted(hashes.items())]
        return env.rstrip("\n") + "\n" + "\n".join(lines) + "\n"

    def version_of(self, release_id):
        if not release_id:
            return self.p["version"]
        try:
            return releases.read_release(self.project.path, release_id).get("version") or release_id
        except (IOError, OSError, ValueError):
            return release_id

    def validate(self, files):
        """Everything the switch can check before the first change: the engine's checks of the
        staged Compose file, and the static files of the images (copied aside already)."""
        if not self.project.exists():
            if self.check_mode:
                return
            self.project.ensure_directories()
        staged = {}
        try:
            for name, key in (("compose.yaml", "compose"), (".env", "env")):
                fd, path = tempfile.mkstemp(dir=self.project.path, prefix=".staged-")
                with os.fdopen(fd, "w") as f:
                    f.write(files[name]["content"])
                staged[key] = path
            self.engine.validate(staged)
        finally:
            for path in staged.values():
                os.unlink(path)
        self.stage_static(parse_env(files[".env"]["content"]))

    def apply(self):
        files = self.staged_files()
        if self.rotates:
            self.engine.observe()
        self.validate(files)
        self.timed("validated")
        if self.check_mode:
            self.preview(files)
            return
        self.changing = True
        changed = self.project.ensure_directories(
            [("secrets/" + s, 0o700) for s in sorted(set(f["service"] for f in self.p["secret_files"]))])
        changed = changed or self.directories_changed
        if self.rotates:
            self.engine.hold_running_passwords(self.secret_specs())
        changed = bool(self.project.write_files(self.secret_specs(), secret=True)) or changed
        # The Compose file last: what it names is in place before it is.
        ordered = sorted(files.values(), key=lambda f: (f["path"] == "compose.yaml", f["path"]))
        changed = bool(self.project.write_files(ordered)) or changed
        if self.target:
            changed = self.activate(self.target, "rollback") or changed
        changed = self.install_static() or changed
        self.timed("written")
        self.engine.prepare(self.rollout)
        self.timed("data services")
        if self.p["migrate"] and self.engine.migrate(self.p["migrations"], self.p["migration_marker"]):
            self.rollout.note("migrations ran: %s" % ", ".join(self.p["migrations"]))
        self.timed("migrated")
        self.engine.converge(self.rollout)
        self.timed("converged")
        changed = changed or bool(self.rollout.changed)
        self.result["changed"] = changed
        self.gate(self.version_of(self.target) if self.target else self.p["version"], changed)
        self.timed("gate passed")
        if self.rotates and self.p["retire_passwords"] and self.engine.retire_passwords():
            self.rollout.note("redis: the old password retired")
        self.record()
        if self.rotates:
            self.engine.release_held_passwords()
        self.timed("recorded")
        if self.p["prune"]:
            self.prune()
            self.timed("pruned")

    def preview(self, files):
        """Check mode: what would change, written nowhere."""
        changed = self.project.ensure_directories()
        changed = bool(self.project.write_files(self.secret_specs(), secret=True)) or changed
        changed = bool(self.project.write_files(list(files.values()))) or changed
        if self.target and releases.current_release(self.project.path) != self.target:
            changed = True
            self.rollout.note("current release: %s -> %s" % (self.before, self.target))
        if self.static_pending:
            changed = True
            self.rollout.note("static files copied out of %s" % ", ".join(sorted(set(e["image"] for e in self.static_pending))))
        if self.project.exists():
            files_changed = any(f in self.project.changed_files for f in ("compose.yaml", ".env"))
            for service, reason in sorted(self.engine.plan(files_changed).items()):
                self.rollout.note("%s: %s" % (service, reason))
        self.result["changed"] = changed or bool(self.rollout.changed)
        self.result["files"] = self.project.changed_files
        if self.p["prune"] and self.project.exists():
            self.prune()

    def activate(self, release_id, reason):
        """A recorded release's files become the live ones; `current` points at it. (A rollback
        wrote and validated them just before; a revert makes them live here.)"""
        if not releases.activate(self.project.path, release_id):
            return False
        releases.audit(self.project.path, {"action": reason, "host": self.hostname, "actor": self.p["actor"],
                                           "from": self.before, "release": release_id,
                                           "version": releases.read_release(self.project.path, release_id).get("version")})
        if reason == "revert":
            self.engine.forget()
        return True

    def gate(self, version, changed):
        """Every container serving, then good answers through the edge. Old containers drain
        meanwhile and stop after it. A run that changed nothing has nothing to prove."""
        if changed and self.p["gate"]["url"] and "nginx" in self.p["services"]:
            token = maintenance_token(self.project.read(MAINTENANCE_FILE))
            self.result["gate"] = http_gate(self.p["gate"]["url"], self.p["gate"]["successes"], self.p["gate"]["timeout"],
                                            self.p["gate"]["expect"].replace("{version}", version),
                                            headers={GATE_HEADER: token} if token else None)
            self.timed("answers through the edge")
        self.engine.finish(self.rollout)
        if self.rollout.drained is not None:
            self.result["drained_after_s"] = self.rollout.drained
        self.timed("old containers stopped")
        self.engine.verify()

    def record(self):
        try:
            recorded, release_id, pruned = releases.record(
                self.project.path, self.p["version"], self.p["images"], self.p["actor"], self.p["keep"],
                self.engine.digests())
        except (releases.ReleaseError, OSError) as exc:
            raise SwitchFailed("Record the release in the host's history", str(exc))
        if recorded:
            self.result["changed"] = True
            releases.audit(self.project.path, {"action": self.p["action"], "host": self.hostname, "actor": self.p["actor"],
                                               "version": self.p["version"], "release": release_id, "from": self.before,
                                               "result": "ok"})
        self.result.update(current=release_id, pruned=pruned)

    def prune(self):
        """What the history no longer needs leaves the host: the images of releases that were
        pruned from it or never passed, the project's stopped containers, dangling images and
        build cache. Housekeeping after a switch that passed: its failure is reported in
        `changes`, not reverted."""
        try:
            self.remove_unused()
        except Exception as exc:  # pylint: disable=broad-except
            self.rollout.note("prune failed: %s" % self.masked("%s: %s" % (type(exc).__name__, exc))[:300])

    def remove_unused(self):
        refs, ids = releases.kept_images(self.project.path)
        refs.update(ref for ref in self.p["images"].values() if ref)
        free_before = 0 if self.check_mode else free_bytes(DOCKER_ROOT)
        pruned = self.engine.prune(sorted(refs), ids)
        if not pruned or not (pruned["containers"] or pruned["images"] or pruned["other"]):
            return
        self.result["changed"] = True
        self.result["pruned_images"] = pruned["images"]
        removed = ["%s (container)" % name for name in pruned["containers"]] + pruned["images"]
        if self.check_mode:
            self.rollout.note("prune: would remove %s" % ", ".join(removed))
            return
        freed = max(0, free_bytes(DOCKER_ROOT) - free_before)
        self.rollout.note("prune: removed %s; %d MB came back" % (
            ", ".join(removed + (["dangling images and build cache"] if pruned["other"] else [])), freed // 10 ** 6))
        releases.audit(self.project.path, {"action": "prune", "host": self.hostname, "actor": self.p["actor"],
                                           "release": releases.current_release(self.project.path),
                                           "containers": pruned["containers"], "images": pruned["images"],
                                           "dangling_and_cache": pruned["other"], "freed_bytes": freed})

    def revert(self, failure):
        """Back to the release this host had, which must pass the gate again. Raises."""
        action, version = self.p["action"], self.version_of(self.target) if self.target else self.p["version"]
        if not self.before:
            raise SwitchFailed(failure.check, "%s: %s of %s failed (%s); no earlier release to revert to." % (
                self.host, action, version, failure.reason()), **failure.details)
        before_version = self.version_of(self.before)
        try:
            self.drop_static()
            self.activate(self.before, "revert")
            self.keep_current_secrets()
            self.install_static(parse_env(self.project.read(".env")))
            self.rollout.stale = []
            self.engine.converge(self.rollout)
            self.gate(before_version, True)
            if self.rotates:
                self.engine.release_held_passwords()
        except Exception as again:  # pylint: disable=broad-except
            check, reason = (again.check, again.reason()) if isinstance(again, SwitchFailed) else (
                "Revert", "%s: %s" % (type(again).__name__, again))
            raise SwitchFailed(check, "%s: %s to %s failed (%s), and the revert to release %s failed too (%s)." % (
                self.host, action, version, failure.reason(), self.before, reason))
        self.result.update(changed=True, current=self.before, reverted_to=self.before)
        message = "%s: %s to %s failed (%s). Reverted automatically to release %s (version %s), which passed the " \
            "health gate again." % (self.host, action, version, failure.reason(), self.before, before_version)
        raise SwitchFailed(failure.check, message, reverted=True, **failure.details)

    def masked(self, text):
        """Text for the audit log (no_log covers only the task's output): secret values masked,
        should a tool's error message quote one."""
        values = [self.p["db_password"], self.p["redis_password"]] + [f["content"] for f in self.p["secret_files"]]
        for value in sorted(set(v for v in values if v), key=len, reverse=True):
            text = text.replace(value, "********")
        return text

    def keep_current_secrets(self):
        """The secret files stay the new ones on a revert (PostgreSQL may run with the new
        password already): the restored environment gets their hashes, so a service whose
        secrets changed rolls onto them with the release it returns to."""
        if not self.p["secret_files"]:
            return
        env = self.project.read(".env")
        kept = [line for line in env.splitlines() if line not in HASHES_COMMENT and not SECRETS_HASH_LINE.match(line)]
        content = self.with_secrets_hashes("\n".join(kept) + "\n")
        if content != env:
            self.project.write_files([{"path": ".env", "content": content, "mode": "0640"}])
            self.engine.forget()

    def audit_event(self, phase, outcome=None, failure=None):
        """A start or end line of the host's audit.log (never in check mode; not a change)."""
        if self.check_mode or not self.project.exists():
            return
        event = {"phase": phase, "action": self.p["action"], "version": self.p["version"], "host": self.hostname,
                 "actor": self.p["actor"]}
        if phase == "start":
            event["from"] = self.before
            if self.p["action"] == "rollback":
                event["to"] = self.p["release"]
        else:
            event.update(result=outcome if outcome == "ok" or not self.result.get("reverted_to")
                         else "reverted to %s" % self.before,
                         release=self.result.get("current") or self.before,
                         reason=self.masked(failure.reason()) if failure else "")
            if self.p["action"] == "rollback":
                event["version"] = self.version_of(self.target) if self.target else ""
        releases.audit(self.project.path, event)

    # -- static files ------------------------------------------------------------------------
    static_pending = ()

    def static_dir(self, entry):
        return self.project.full("static/%s/%s" % (entry["service"], entry["path"].strip("/")))

    @staticmethod
    def staging_prefix(target):
        """Where a static directory's new copy is staged: beside it, hidden."""
        return os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".tmp.")

    def stage_static(self, env):
        """Copies each static location whose image changed out of its image into a directory
        beside its place (a container is created, never started): a path the image lacks stops
        the switch before any change."""
        pending = []
        for entry in self.p["static"]:
            image = env.get(image_var(entry["service"]))
            target = self.static_dir(entry)
            rc, out, _err = self.engine.docker("image", "inspect", "--format", "{{.Id}}", image, check=False)
            image_id = out.strip() if rc == 0 else ""
            # Copied again when the image or the directory in it changes.
            origin = "%s %s" % (image_id, entry["from_image"])
            marker = self.project.read(os.path.relpath(os.path.join(target, ".image"), self.project.path))
            if marker is not None and marker.strip() == origin:
                continue
            pending.append(dict(entry, image=image, origin=origin, target=target))
        self.static_pending = pending
        if self.check_mode or not pending:
            return
        for entry in pending:
            parent = os.path.dirname(entry["target"])
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            entry["staged"] = tempfile.mkdtemp(dir=parent, prefix=os.path.basename(self.staging_prefix(entry["target"])))
            rc, out, err = self.copy_out(entry["image"], entry["from_image"], entry["staged"])
            if rc != 0:
                self.drop_static()
                raise SwitchFailed(
                    "Copy the static files out of the image of %s" % entry["service"],
                    "app_services.%s.static: %s is not in the image %s (%s)" % (
                        entry["service"], entry["from_image"], entry["image"], (err or out).strip()[-300:]),
                    before_change=True)
            with open(os.path.join(entry["staged"], ".image"), "w") as f:
                f.write(entry["origin"] + "\n")

    def copy_out(self, image, source, dest):
        rc, out, err = self.engine.docker("create", "--entrypoint", "/nonexistent", image, check=False)
        if rc != 0:
            return rc, out, err
        container = out.strip()
        try:
            rc, out, err = self.engine.docker("cp", "%s:%s/." % (container, source.rstrip("/")), dest + "/", check=False)
        finally:
            self.engine.docker("rm", "--force", container, check=False)
        if rc == 0:
            subprocess.call(["chmod", "-R", "a+rX,go-w", dest])
            os.chmod(dest, 0o755)
        return rc, out, err

    def drop_static(self):
        for entry in self.static_pending:
            if entry.get("staged") and os.path.isdir(entry["staged"]):
                shutil.rmtree(entry["staged"], ignore_errors=True)
        self.static_pending = ()

    def clear_leftovers(self):
        """What a run killed half-way left (under the lock: no other run uses them): staged
        files and static copies."""
        paths = glob.glob(self.project.full(".staged-*"))
        for entry in self.p["static"]:
            paths += glob.glob(self.staging_prefix(self.static_dir(entry)) + "*")
        for path in paths:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    def install_static(self, env=None):
        """Moves the staged copies into place (old dir aside, new in, old removed)."""
        if env is not None:
            self.stage_static(env)
        for entry in self.static_pending:
            old = entry["target"] + ".old"
            if os.path.isdir(old):
                shutil.rmtree(old)
            if os.path.isdir(entry["target"]):
                os.rename(entry["target"], old)
            os.rename(entry["staged"], entry["target"])
            shutil.rmtree(old, ignore_errors=True)
            self.rollout.note("%s: static files of %s copied to %s" % (entry["service"], entry["image"], entry["target"]))
        installed = bool(self.static_pending)
        self.static_pending = ()
        return installed

    # -- the other entry points ------------------------------------------------------------
    def preflight(self):
        """What playbooks/update.yml checks on every host before any change anywhere (with one
        host the update's own switch checks the same before its first change)."""
        self.refuse_update(lock_taken=False)
        files = self.staged_files()
        self.engine.observe()
        self.validate(files)
        self.drop_static()

    def refuse_update(self, lock_taken=True):
        """An update needs a deployed host, a free lock and room for the new images (the switch
        itself takes the lock, naming its holder)."""
        self.engine.preflight()
        if not os.path.isfile(self.project.full("compose.yaml")):
            raise SwitchFailed("Refuse to update a host that was never deployed", "%s has no %s: deploy it first with "
                               "playbooks/deploy.yml" % (self.host, self.project.full("compose.yaml")), before_change=True)
        lock = self.lock()
        if not lock_taken and os.path.isdir(lock.path) and not self.p["lock_force"]:
            raise SwitchFailed("Refuse to start while another deploy holds the lock", "%s: another deploy holds the lock %s. "
                               "If that deploy is dead, run again with -e app_lock_force=true." % (self.host, lock.path),
                               before_change=True)
        if self.p["min_free_mb"]:
            free = free_bytes(DOCKER_ROOT) // (1024 * 1024)
            if free < self.p["min_free_mb"]:
                raise SwitchFailed("Check the free space for images", "%s has %d MB free under %s; the update wants %d MB "
                                   "(app_update_min_free_mb)." % (self.host, free, DOCKER_ROOT, self.p["min_free_mb"]),
                                   before_change=True)

    def migrate_next(self):
        """The new release's migrations, once, before any host switches (playbooks/update.yml):
        its Compose file and environment rendered beside the live ones, and removed after."""
        if not self.p["migrations"]:
            return
        ran = (self.project.read(".migrated") or "").splitlines()
        if self.p["migration_marker"] in ran:
            return
        self.result["changed"] = True
        if self.check_mode:
            self.rollout.note("migrations would run: %s" % ", ".join(self.p["migrations"]))
            return
        # Under the deploy lock: no switch of this host runs the migrations, or changes what they
        # run against, at the same time.
        lock = self.lock()
        self.take(lock, "migrations of version %s" % self.p["version"])
        staged = {}
        try:
            files = self.staged_files()
            for name, key in (("compose.yaml", "compose"), (".env", "env")):
                path = self.project.full(".next-" + name.replace(".", ""))
                with open(path, "w") as f:
                    f.write(files[name]["content"])
                os.chmod(path, 0o640)
                staged[key] = path
            self.engine.migrate(self.p["migrations"], self.p["migration_marker"], files=staged)
        finally:
            try:
                for path in staged.values():
                    os.unlink(path)
            finally:
                lock.release()
        self.rollout.note("migrations ran: %s" % ", ".join(self.p["migrations"]))
