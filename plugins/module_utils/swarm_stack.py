# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Deploys the stack of a Compose project directory the app role rendered (compose.yaml, .env,
secrets/, selfhost/, nginx/) to Docker Swarm and tells what became of every service.

What the Swarm engine of the app role's switch (module_utils.engine_swarm) deploys with:
reading the project, rendering the stack (module_utils.stack_render), `docker stack deploy`,
the wait for Swarm's verdict (module_utils.swarm_update) and the removal of secret and config
versions no service uses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time

from ansible_collections.selfhost.stack.plugins.module_utils import stack_render
from ansible_collections.selfhost.stack.plugins.module_utils import swarm_update

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_YAML = False

STACK_FILE = "stack.yaml"
HASH_KEY = "secrets/.hash-key"
# Project directories whose files every task that mounts them needs on its node: swarm configs.
CONFIG_DIRS = {"./selfhost": 0o555, "./nginx": 0o444}
NAMESPACE = "com.docker.stack.namespace"
# How long after a deploy a service whose tasks changed may show no update yet: Swarm's updater
# starts within moments, or not at all when no task has to be replaced.
UPDATE_START_SECONDS = 15


def read_env(path):
    """KEY=VALUE lines of the role's .env (no quoting: image references and plain words)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key] = value
    return env


def file_digest(path, key=None):
    """sha256 of a file, keyed (HMAC) for secrets: a plain hash of a password can be guessed."""
    with open(path, "rb") as f:
        content = f.read()
    if key is None:
        return hashlib.sha256(content).hexdigest()
    return hmac.new(key, content, hashlib.sha256).hexdigest()


def dump(doc):
    """The stack file's text, as the stack that converged last is kept on the manager."""
    return "# Rendered by selfhost.stack.swarm_stack from compose.yaml: the stack that converged last.\n" \
        + yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)


def config_key(directory, filename):
    return "%s_%s" % (directory.strip("./"), filename.replace("-", "_").replace(".", "_"))


def referenced(inspected):
    """Names of the secrets and configs a service's current and previous spec use (a rollback
    to the previous spec needs its versions)."""
    names = set()
    for spec in (inspected.get("Spec"), inspected.get("PreviousSpec")):
        container = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        names.update(s.get("SecretName") for s in container.get("Secrets") or [])
        names.update(c.get("ConfigName") for c in container.get("Configs") or [])
    return names


class StackError(Exception):
    def __init__(self, msg, **details):
        super(StackError, self).__init__(msg)
        self.details = details


class SwarmStack(object):
    """One stack: `name` deployed from `project_dir` on a swarm manager."""

    def __init__(self, module, project_dir, name, routed, placement):
        self.module = module
        self.project_dir = project_dir
        self.name = name
        self.routed = routed
        self.placement = placement
        self.path = os.path.join(project_dir, STACK_FILE)

    # -- the docker CLI ---------------------------------------------------------------------
    def docker(self, *args, **kwargs):
        rc, out, err = self.module.run_command(["docker"] + list(args), cwd=self.project_dir)
        if rc != 0 and not kwargs.get("may_fail"):
            raise StackError("docker %s failed: %s" % (" ".join(args[:3]), (err or out).strip()[-1500:]))
        return rc, out, err

    def services(self):
        """`docker service inspect` objects of the stack's services."""
        _rc, out, _err = self.docker("service", "ls", "--quiet", "--filter", "label=%s=%s" % (NAMESPACE, self.name))
        ids = out.split()
        if not ids:
            return []
        return json.loads(self.docker("service", "inspect", *ids)[1])

    def replicas(self):
        """{service: (running, desired)} from `docker service ls`."""
        _rc, out, _err = self.docker("service", "ls", "--filter", "label=%s=%s" % (NAMESPACE, self.name),
                                     "--format", "{{.Name}} {{.Replicas}}")
        counts = {}
        for line in out.splitlines():
            name, replicas = line.split()[:2]
            running, _slash, desired = replicas.partition("/")
            counts[self.short(name)] = (int(running), int(desired.split()[0]) if desired else 0)
        return counts

    def short(self, service):
        prefix = self.name + "_"
        return service[len(prefix):] if service.startswith(prefix) else service

    # -- rendering --------------------------------------------------------------------------
    def project(self):
        with open(os.path.join(self.project_dir, "compose.yaml")) as f:
            return yaml.safe_load(f)

    def context(self, project):
        key_path = os.path.join(self.project_dir, HASH_KEY)
        key = None
        if os.path.exists(key_path):
            with open(key_path, "rb") as f:
                key = f.read()
        secret_hashes, owners = {}, {}
        for secret, entry in (project.get("secrets") or {}).items():
            path = os.path.normpath(os.path.join(self.project_dir, entry["file"]))
            entry["file"] = path
            if key is None:
                raise StackError("%s is missing: the role writes it with the secret files" % key_path)
            secret_hashes[secret] = file_digest(path, key)
            stat = os.stat(path)
            owners[secret] = (str(stat.st_uid), str(stat.st_gid))
        configs = {}
        for directory, mode in CONFIG_DIRS.items():
            full = os.path.normpath(os.path.join(self.project_dir, directory))
            if not os.path.isdir(full):
                continue
            configs[directory] = dict(
                (filename, {"key": config_key(directory, filename), "sha256": file_digest(os.path.join(full, filename)),
                            "file": os.path.join(full, filename), "mode": mode})
                for filename in sorted(os.listdir(full)) if os.path.isfile(os.path.join(full, filename)))
        return {"stack": self.name, "images": read_env(os.path.join(self.project_dir, ".env")),
                "routed": self.routed, "singletons": ["nginx"], "secret_hashes": secret_hashes,
                "secret_owners": owners, "configs": configs, "endpoint_mode": "dnsrr", "publish_mode": "host",
                "placement": self.placement}

    def render(self):
        project = self.project()
        return stack_render.stack(project, self.context(project))

    def deployed_text(self):
        if not os.path.exists(self.path):
            return ""
        with open(self.path) as f:
            return f.read()

    # -- what needs doing -------------------------------------------------------------------
    def behind(self, doc):
        """Why the running stack is not the rendered one yet ([] when it is)."""
        reasons = []
        counts = self.replicas()
        for service, spec in doc["services"].items():
            wanted = (spec.get("deploy") or {}).get("replicas", 1)
            if service not in counts:
                reasons.append("%s: not deployed" % service)
            elif counts[service][1] != wanted:
                reasons.append("%s: scaled to %d, the stack has %d" % (service, counts[service][1], wanted))
            elif counts[service][0] < counts[service][1]:
                reasons.append("%s: %d of %d tasks running" % ((service,) + counts[service]))
        for service in sorted(set(counts) - set(doc["services"])):
            reasons.append("%s: no longer in the stack" % service)
        for service, message in sorted(swarm_update.failures(self.services()).items()):
            reasons.append("%s: %s" % (self.short(service), message or "update not completed"))
        return reasons

    # -- changing the swarm -----------------------------------------------------------------
    def deploy(self, text, timeout, wanted):
        """Writes the stack to a file beside the last deployed one, deploys it and waits for Swarm's
        verdict. The file becomes the deployed one only when every service converged. `wanted`:
        the image each service should run ({short name: reference})."""
        before = set(s["Spec"]["Name"] for s in self.services())
        pending = self.path + ".new"
        with open(pending, "w") as f:
            f.write(text)
        os.chmod(pending, 0o640)
        # Detached: the CLI's own wait (--detach=false) also sits out the monitor window of every
        # service the deploy did not change, and waits for ever for a task no node can take.
        try:
            started = time.time()
            rc, out, err = self.module.run_command(
                ["timeout", str(timeout), "docker", "stack", "deploy", "--detach=true", "--prune", "--with-registry-auth",
                 "--compose-file", pending, self.name], cwd=self.project_dir)
            if rc != 0:
                raise StackError("docker stack deploy failed: %s" % (err or out).strip()[-1500:], failed_check="stack deploy")
            services = self.wait(started + timeout, started)
            failed = swarm_update.failures(services)
            if failed:
                names = sorted(self.short(s) for s in failed)
                raise StackError(
                    "Swarm rolled back the update of %s: %s" % (", ".join(names), "; ".join(
                        "%s: %s (%s)" % (self.short(s), m, self.task_errors(s, wanted[self.short(s)])) for s, m in sorted(failed.items()))),
                    failed_check="swarm update", services=names)
            rebalanced = self.spread(services, started + timeout)
        except BaseException:
            # Only a converged stack is kept: stack.yaml stays the last one that was.
            os.unlink(pending)
            raise
        os.rename(pending, self.path)
        created = sorted(self.short(s["Spec"]["Name"]) for s in services if s["Spec"]["Name"] not in before)
        return created, rebalanced

    def task_nodes(self, service):
        _rc, out, _err = self.docker("service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}}",
                                     service)
        return out.split()

    def spread(self, services, deadline):
        """A start-first update may leave every task of a routed service on one node (Swarm places
        each new task beside the old ones and counts those). One node lost would then take the
        whole service down: such services are replaced once more (`--force`, start-first), which
        spreads them. Returns the services rebalanced."""
        uneven = []
        for service in services:
            name = service["Spec"]["Name"]
            replicas = ((service["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1)
            nodes = self.task_nodes(name) if self.short(name) in self.routed and replicas > 1 else []
            if len(nodes) > 1 and len(set(nodes)) == 1:
                uneven.append(name)
        if not uneven:
            return []
        started = time.time()
        for name in uneven:
            self.docker("service", "update", "--force", "--detach=true", "--quiet", name)
        failed = swarm_update.failures(self.wait(deadline, started))
        if failed:
            raise StackError("Swarm rolled back spreading %s over the nodes: %s" % (
                ", ".join(sorted(self.short(s) for s in failed)), "; ".join(failed.values())),
                failed_check="swarm update", services=sorted(self.short(s) for s in failed))
        return sorted(self.short(name) for name in uneven)

    def wait(self, deadline, started):
        """Until no service is still updating and every service runs its tasks (or was rolled
        back), or the deadline."""
        while True:
            services = self.services()
            counts = self.replicas()
            short = [s for s, (running, desired) in counts.items() if running < desired]
            starting = time.time() - started < UPDATE_START_SECONDS
            if swarm_update.settled(services, starting) and (not short or swarm_update.failures(services)):
                return services
            if time.time() > deadline:
                waiting = sorted(set(short) | set(self.short(s) for s, (verdict, _m)
                                                  in swarm_update.verdicts(services).items()
                                                  if verdict == swarm_update.PENDING))
                raise StackError("the stack did not converge within the timeout: %s" % ", ".join(
                    "%s %d/%d tasks" % ((s,) + counts[s]) if s in counts else "%s updating" % s for s in waiting),
                    failed_check="swarm update", services=waiting)
            time.sleep(2)

    def task_errors(self, service, image):
        """How the tasks of `image`, the one Swarm rolled back from, ended, as `docker service ps`
        tells (an unhealthy task is stopped: it often ends `Complete`, with no error of its own)."""
        _rc, out, _err = self.docker("service", "ps", "--no-trunc", "--format",
                                     "{{.Image}}|{{.CurrentState}}|{{.Error}}", service, may_fail=True)
        ended = []
        for line in out.splitlines():
            task_image, _sep, rest = line.partition("|")
            state, _sep, error = rest.partition("|")
            task_image = task_image.split("@")[0]
            if task_image != image.split("@")[0] or not state:
                continue
            entry = "%s %s%s" % (task_image.rsplit("/", 1)[-1], state.split()[0].lower(),
                                 ": " + error.strip() if error.strip() else "")
            if entry not in ended:
                ended.append(entry)
        return "new tasks ended: %s" % ", ".join(ended[:3]) if ended else "no ended task recorded"

    def prune(self):
        """Removes the stack's secret and config versions that no service's spec (current or
        previous) uses: Swarm keeps them when a deploy names a new version."""
        used = set()
        for service in self.services():
            used |= referenced(service)
        removed = []
        for kind in ("secret", "config"):
            _rc, out, _err = self.docker(kind, "ls", "--filter", "label=%s=%s" % (NAMESPACE, self.name),
                                         "--format", "{{.Name}}")
            for name in sorted(set(out.split()) - used):
                if not self.module.check_mode:
                    self.docker(kind, "rm", name, may_fail=True)
                removed.append(name)
        return removed
