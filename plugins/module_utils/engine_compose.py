# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Compose engine of the switch: one Compose project per host.

Routed services roll without downtime: containers of the new configuration start beside the
old ones, healthy first; the edge Nginx's pools then name them (a graceful reload) and the old
ones drain and stop. Everything else Compose brings to the rendered state stop-first. PostgreSQL
and Redis come up first and are never recreated by an application change unless allowed;
rotated passwords change in the running servers (stdin, never argv)."""

from __future__ import annotations

import json
import os
import time

from ansible_collections.selfhost.stack.plugins.module_utils import image_prune
from ansible_collections.selfhost.stack.plugins.module_utils import rollout as ro
from ansible_collections.selfhost.stack.plugins.module_utils.image_config import by_reference
from ansible_collections.selfhost.stack.plugins.module_utils.engine import PASSWORD_FILES, Engine, SwitchFailed, wait_until

NGINX_START = "/selfhost/nginx-start"  # the app role's helper, mounted into the Nginx container
DATA_SERVICES = ("postgres", "redis")
PG_VERSION_FILES = ("pgdata/PG_VERSION", "PG_VERSION")  # old layout, the volume itself; 18: */docker/
POOLS_FILE = "nginx/upstreams.pools"
# The least time between the edge's graceful reload and stopping an old container: Nginx's new
# workers take over meanwhile.
DRAIN_MIN = 0.5
POOLS_HEADER = ("# Managed by selfhost.stack: the containers Nginx sends traffic to, by container name.\n"
                "# /selfhost/nginx-start resolves them into the pools Nginx loads (leaving out containers\n"
                "# that do not run), so this file is not loaded by Nginx itself.\n")


def redis_requirepass(config):
    """The value of `requirepass "..."` in a Redis configuration ('' without one)."""
    for line in (config or "").splitlines():
        if line.startswith('requirepass "') and line.endswith('"'):
            return line[len('requirepass "'):-1]
    return ""


class ComposeEngine(Engine):
    name = "compose"

    def __init__(self, module, params, project):
        super(ComposeEngine, self).__init__(module, params, project)
        self.project_name = params["name"]
        self.services = params["services"]
        self.routed = params["routed"]
        self.pools = params["pools"]
        self.timeout = params["health_timeout"]
        self.pull = "never" if params["pull"] == "never" else "missing"
        self.pg_volume_existed = True
        self.db_password_changed = False
        self._state = None

    # -- reading the project ---------------------------------------------------------------
    def compose(self, *args, **kwargs):
        files = kwargs.pop("files", None)
        head = ["compose"]
        if files:
            head += ["--project-directory", self.params["project_dir"], "--file", files["compose"],
                     "--env-file", files["env"]]
        return self.docker(*(head + list(args)), **kwargs)

    def containers(self):
        """The project's containers, one-off (run) containers left out."""
        _rc, out, _err = self.docker("ps", "--all", "--quiet", "--no-trunc", "--filter",
                                     "label=com.docker.compose.project=%s" % self.project_name)
        ids = out.split()
        if not ids:
            return []
        _rc, out, _err = self.docker("inspect", *ids, check=False)
        found = [ro.Container.from_inspect(d) for d in json.loads(out or "[]")]
        return [c for c in found if not c.oneoff]

    def image_ids(self, refs):
        """{reference: image ID, or None when the image is not on this host}, in one inspect."""
        refs = sorted(set(r for r in refs if r))
        if not refs:
            return {}
        _rc, out, _err = self.docker("image", "inspect", *refs, check=False)
        try:
            inspected = json.loads(out or "[]")
        except ValueError:
            inspected = []
        return dict((ref, (image or {}).get("Id")) for ref, image in by_reference(refs, inspected).items())

    def state(self, files=None):
        """The project as `docker compose up` sees it: {config, hashes, images, containers,
        by_service, outdated}. files: a staged compose and env file instead of the live ones."""
        _rc, out, _err = self.compose("config", "--format", "json", files=files, step="Validate the Compose file")
        config = json.loads(out)
        _rc, out, _err = self.compose("config", "--hash", "*", files=files, step="Validate the Compose file")
        hashes = ro.parse_hashes(out)
        services = config.get("services") or {}
        refs = dict((name, spec.get("image")) for name, spec in services.items())
        ids = self.image_ids(refs.values())
        found = self.containers()
        by_service = {}
        for c in found:
            if c.state not in ("created", "dead"):
                by_service.setdefault(c.service, []).append(c)
        outdated = {}
        for name, spec in services.items():
            if "migrations" in (spec.get("profiles") or []):
                continue
            image_id = ids.get(refs[name]) if refs[name] else ro.ANY_IMAGE
            reason = ro.out_of_date(by_service.get(name, []), self.replicas(spec), hashes.get(name), image_id)
            if reason:
                outdated[name] = reason
        for name in by_service:
            if name not in services:
                outdated[name] = "not in the Compose file any more (orphan)"
        return {"config": config, "hashes": hashes, "refs": refs, "images": ids, "containers": found,
                "by_service": by_service, "outdated": outdated}

    @staticmethod
    def replicas(spec):
        return int((spec.get("deploy") or {}).get("replicas") or spec.get("scale") or 1)

    # -- before any change -------------------------------------------------------------------
    def observe(self):
        self.read_running_passwords([p for p in PASSWORD_FILES if p.split("/", 1)[0] in self.services])

    def validate(self, staged):
        # The staged files are what the switch writes next: their state is the live one then.
        state = self.state(staged)
        self._state = state
        self.refuse_data_restart(state)
        self.check_postgres_major(state)
        return state

    def refuse_data_restart(self, state):
        recreated = dict((s, r) for s, r in state["outdated"].items()
                         if s in DATA_SERVICES and ("another configuration" in r or "runs another image" in r))
        if recreated and not self.params["data_restart_allowed"]:
            raise SwitchFailed(
                "Refuse to recreate PostgreSQL or Redis unless app_data_restart_allowed is true",
                "This run would recreate %s (%s), which interrupts the database for every service that uses it. "
                "Nothing of it was changed. Run again with -e app_data_restart_allowed=true to go ahead (in a "
                "maintenance window)." % (", ".join(sorted(recreated)), "; ".join(r for _s, r in sorted(recreated.items()))),
                before_change=True)

    def check_postgres_major(self, state):
        if "postgres" not in self.services:
            return
        volume = "%s_postgres_data" % self.project_name
        rc, out, _err = self.docker("volume", "inspect", "--format", "{{.Mountpoint}}", volume, check=False)
        self.pg_volume_existed = rc == 0
        if rc != 0:
            return
        cluster = ""
        mountpoint = out.strip()
        candidates = [os.path.join(mountpoint, p) for p in PG_VERSION_FILES]
        if os.path.isdir(mountpoint):
            candidates[1:1] = sorted(os.path.join(mountpoint, d, "docker", "PG_VERSION") for d in os.listdir(mountpoint))
        for path in candidates:
            if os.path.isfile(path):
                with open(path) as f:
                    cluster = f.read().strip()
                break
        image = state["refs"].get("postgres")
        major = ""
        if image and state["images"].get(image):
            _rc, out, _err = self.docker("image", "inspect", "--format", "{{json .Config.Env}}", image, check=False)
            env = dict(item.split("=", 1) for item in json.loads(out or "[]") or [] if "=" in item)
            major = env.get("PG_MAJOR", "").split(".")[0]
        if cluster and major and cluster != major:
            raise SwitchFailed(
                "Refuse a PostgreSQL major version change on the existing data volume",
                "app_postgres_image %s runs PostgreSQL %s, but the data volume %s holds a PostgreSQL %s cluster, which it "
                "cannot open. Nothing was changed. To upgrade: take a backup (playbooks/backup.yml), deploy with the new image "
                "and a new volume (or pg_upgrade the volume), then restore (playbooks/restore.yml); or set app_postgres_image "
                "back to a PostgreSQL %s image." % (image, major, volume, cluster, cluster), before_change=True)

    def current(self):
        """state() of the live files, read once until forget()."""
        if self._state is None:
            self._state = self.state()
        return self._state

    def plan(self, files_changed):
        # validate() read the staged files: the prediction holds for changed files too.
        return dict(self.current()["outdated"])

    def forget(self):
        """The live files or the containers changed: the next state() reads them again."""
        self._state = None

    # -- the switch --------------------------------------------------------------------------
    def prepare(self, rollout):
        state = self.current()
        pending = [s for s in DATA_SERVICES if s in self.services and s in state["outdated"]]
        if pending:
            self.forget()
            self.compose("up", "--detach", "--no-deps", "--pull", self.pull, *pending, step="Start PostgreSQL and Redis")
            self.wait_serving(pending, "Start PostgreSQL and Redis and wait until they are healthy")
            rollout.note("%s: started (%s)" % (", ".join(pending), "; ".join(state["outdated"][s] for s in pending)))
        if "postgres" in self.services and not self.pg_volume_existed:
            # The image's entrypoint exports the password into the server's environment on the
            # start that creates the cluster; the start script keeps it out of every later start.
            self.forget()
            self.compose("restart", "postgres", step="Restart PostgreSQL once after it created its cluster")
            self.wait_serving(["postgres"], "Wait until PostgreSQL is healthy again")
            self.pg_volume_existed = True
            rollout.note("postgres: restarted once after it created its cluster, so no process keeps the password")
        if self.rotate_redis_password():
            rollout.note("redis: the new password added beside the old one")

    def exec_data(self, service, command, stdin, step):
        rc, out, err = self.compose("exec", "-T", service, *command, data=stdin, check=False, step=step)
        if rc != 0:
            raise SwitchFailed(step, "docker compose exec %s %s failed (rc %d): %s" % (
                service, command[0], rc, (err or out).strip()[-600:]))
        return out

    def rotate_redis_password(self):
        """Redis gets the new password beside the old one (an ACL password of the default user):
        containers that still use the old one keep working until the roll replaced them."""
        if "redis/redis.conf" not in self.running_passwords:
            return False
        old = redis_requirepass(self.running_passwords["redis/redis.conf"])
        new = self.params["redis_password"] or ""
        if old == new:
            return False
        auth_old = 'AUTH "%s"\n' % old if old else ""
        if new:
            out = self.exec_data("redis", ["redis-cli"], 'AUTH "%s"\nPING\n' % new,
                                 "Ask Redis whether it accepts the new password already")
            if "PONG" in out:
                return False
            out = self.exec_data("redis", ["redis-cli"], '%sACL SETUSER default on ">%s"\n' % (auth_old, new),
                                 "Add the new password to the running Redis, beside the old one")
        else:
            out = self.exec_data("redis", ["redis-cli"], '%sCONFIG SET requirepass ""\n' % auth_old,
                                 "Run the running Redis without a password, as app_redis_password now says")
        if out.strip().splitlines()[-1:] != ["OK"]:
            raise SwitchFailed("Change the Redis password", "redis-cli did not answer OK")
        return True

    def change_db_password(self):
        """PostgreSQL reads its password file only when it creates the cluster: a new password
        is set in the running server, the statement never logged. From here on containers of
        the old release keep their connections but cannot open new ones: so this runs as late
        as it can, right before the migrations or the new containers start."""
        old = self.running_passwords.get("postgres/db_password")
        new = self.params["db_password"]
        if old is None or new is None or old == new or self.db_password_changed:
            return False
        user = self.params["db_user"]
        sql = ("SET log_statement = 'none';\nSET log_min_error_statement = 'panic';\n"
               "SET log_min_duration_statement = -1;\n"
               "ALTER ROLE \"%s\" WITH PASSWORD '%s';\n" % (user.replace('"', '""'), new.replace("'", "''")))
        self.exec_data("postgres", ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", "postgres"], sql,
                       "Change the database password in the running PostgreSQL")
        self.db_password_changed = True
        return True

    def migrate(self, migrations, marker, files=None):
        if not migrations:
            return False
        ran = (self.project.read(".migrated") or "").splitlines()
        if marker in ran:
            return False
        self.change_db_password()
        for service in migrations:
            rc, out, err = self.compose("run", "--rm", "--no-deps", "--quiet-pull", service, files=files, check=False)
            if rc != 0:
                raise SwitchFailed("Run each migration in a one-off container", "%s failed (rc %d): %s" % (
                    service, rc, (err + out).strip()[-1500:]))
        self.project.append_line(".migrated", marker)
        return True

    def converge(self, rollout):
        state = self.current()
        self.forget()
        leftovers = ro.leftovers(state["containers"])
        if leftovers:
            self.docker("rm", "--force", *leftovers)
            rollout.note("removed containers Docker created but never started: %s" % ", ".join(leftovers))
        services = state["config"].get("services") or {}
        by_service = state["by_service"]
        keep, start = {}, {}
        for name in self.routed:
            containers = by_service.get(name, [])
            if name not in state["outdated"] or not containers:
                continue
            replicas = self.replicas(services[name])
            image_id = state["images"].get(state["refs"].get(name)) if state["refs"].get(name) else ro.ANY_IMAGE
            good = [c for c in containers if not ro.out_of_date([c], 1, state["hashes"].get(name), image_id)]
            if len(good) >= replicas:
                keep[name] = sorted(good, key=lambda c: c.number)[-replicas:]
            else:
                start[name] = (containers, replicas)
        # The new password in the running PostgreSQL as late as it can be: from here on the old
        # containers cannot open new connections, until the edge sends nothing to them any more.
        self.change_db_password()
        if start:
            keep.update(self.start_beside(start, rollout, state))
        for name, kept in keep.items():
            stale = [c.name for c in by_service.get(name, []) if c not in kept]
            rollout.stale.extend(stale)
            if name not in start:
                rollout.note("%s: back to %s, %s drain" % (name, ", ".join(c.name for c in kept), ", ".join(stale)))
        self.point_edge(rollout, dict((n, [c.name for c in kept]) for n, kept in keep.items()))
        pending = [s for s in state["outdated"] if s not in keep]
        if pending:
            # Compose must not see the draining containers: they are stopped first.
            self.finish(rollout)
            self.compose("up", "--detach", "--remove-orphans", "--pull", self.pull, step="Start the stack")
            self.wait_serving([s for s in pending if s in services], "Start the stack and wait until every container is healthy")
            rollout.note("; ".join("%s: %s" % (s, state["outdated"][s]) for s in pending))
            self.point_edge(rollout, {})
        return rollout

    def start_beside(self, start, rollout, state):
        """New containers for each routed service beside its old ones; {service: new containers}
        once they serve. When they do not, they are removed and the old ones keep serving."""
        args, names = [], []
        for name, (containers, replicas) in sorted(start.items()):
            args += ["--scale", "%s=%d" % (name, len(containers) + replicas)]
            names.append(name)
        # By ID: Compose gives a new container the number (and name) of one removed just before.
        before = set(c.id for c in state["containers"])
        rc, out, err = self.compose("up", "--detach", "--no-recreate", "--pull", self.pull, *(args + names), check=False)
        if rc != 0:
            self.remove_new(names, before)
            raise SwitchFailed("container start", "starting new %s containers failed, removed them; the old ones keep "
                               "serving: %s" % (", ".join(names), (err or out).strip()[-1500:]))

        def serving():
            now = [c for c in self.containers() if c.service in start and c.id not in before]
            ready = dict((n, [c for c in now if c.service == n and c.serving]) for n in start)
            if any(c.state in ("exited", "dead") for c in now):
                return ("failed", now)
            if all(len(ready[n]) >= start[n][1] for n in start):
                return ("ok", ready)
            return None

        verdict = wait_until(serving, self.timeout)
        if not verdict or verdict[0] != "ok":
            now = [c for c in self.containers() if c.service in start and c.id not in before]
            detail = "; ".join("%s is %s/%s: %s" % (c.name, c.state, c.health, self.health_log(c.name))
                               for c in now if not c.serving) or "no new container started"
            self.remove_new(names, before)
            raise SwitchFailed("container health", "new %s containers did not become healthy within %ds, removed them; "
                               "the old ones keep serving: %s" % (", ".join(names), self.timeout, detail))
        ready = verdict[1]
        for name in names:
            started = ", ".join(c.name for c in ready[name][:start[name][1]])
            rollout.note("%s: %s started beside %s" % (name, started, ", ".join(c.name for c in start[name][0])))
        return dict((n, ready[n][:start[n][1]]) for n in names)

    def remove_new(self, services, before):
        new = [c.name for c in self.containers() if c.service in services and c.id not in before]
        if new:
            self.docker("rm", "--force", *new, check=False)

    def health_log(self, name):
        rc, out, _err = self.docker("inspect", "--format", "{{json .State.Health}}", name, check=False)
        if rc != 0 or not out.strip() or out.strip() == "null":
            return ""
        logs = (json.loads(out).get("Log") or [])[-1:]
        return logs[0].get("Output", "").strip()[-300:] if logs else ""

    def wait_serving(self, services, step):
        """Until every container of `services` runs (and is healthy where it has a check);
        a container without a healthcheck serves once it runs."""
        def ready():
            found = [c for c in self.containers() if c.service in services]
            if any(c.state in ("exited", "dead") and c.service in services for c in found):
                return None
            counts = dict((s, len([c for c in found if c.service == s and c.serving])) for s in services)
            return all(counts[s] > 0 for s in services) and all(c.serving for c in found)

        if not wait_until(ready, self.timeout):
            found = [c for c in self.containers() if c.service in services and not c.serving]
            raise SwitchFailed(step, "not healthy within %ds: %s" % (self.timeout, "; ".join(
                "%s is %s%s: %s" % (c.name, c.state, "/" + c.health if c.health else "", self.health_log(c.name))
                for c in found) or
                "no container of %s" % ", ".join(services)))

    # -- the edge ------------------------------------------------------------------------
    def pools_content(self, members):
        """The pools file: per pool the containers Nginx sends traffic to."""
        pools = []
        found = None
        for pool in self.pools:
            names = members.get(pool["service"])
            if names is None:
                found = self.containers() if found is None else found
                names = ro.pool_members([c for c in found if c.service == pool["service"]])
            pools.append((pool["pool"], pool["port"], names))
        return POOLS_HEADER + "\n".join(ro.render_upstreams(pools).splitlines()[2:]) + "\n"

    def point_edge(self, rollout, members):
        """Writes the pools and reloads Nginx when they changed or its configuration did."""
        if "nginx" not in self.services:
            return
        content = self.pools_content(members)
        changed = self.project.write(POOLS_FILE, content, 0o644)
        if changed:
            rollout.note("nginx: pools now %s" % "; ".join(
                "%s %s" % (p["pool"], ", ".join(members.get(p["service"]) or ["(serving)"])) for p in self.pools))
        if changed or self.project.edge_changed:
            if self.reload_edge():
                self.project.edge_changed = False
                rollout.switched_at = time.monotonic()

    def reload_edge(self):
        """Graceful reload, tried again when the runtime could not start the exec (under load)."""
        running = [c for c in self.containers() if c.service == "nginx" and c.state == "running"]
        if not running:
            return False  # a stopped Nginx is pending: `up` starts it with the files as they are
        for attempt in range(3):
            rc, out, err = self.compose("exec", "-T", "nginx", "/bin/sh", NGINX_START, "--reload", check=False)
            if rc == 0:
                return True
            if not ro.exec_never_started(rc, err) or attempt == 2:
                raise SwitchFailed("Reload Nginx", "nginx-start --reload failed (rc %d): %s" % (rc, (err or out).strip()[-600:]))
            time.sleep(1)
        return False

    def engine_files(self):
        """A first pools file, so Nginx starts before the services it sends traffic to."""
        if "nginx" not in self.services or self.project.read(POOLS_FILE) is not None:
            return []
        return [{"path": POOLS_FILE, "content": self.pools_content(dict((p["service"], []) for p in self.pools)),
                 "mode": "0644"}]

    def finish(self, rollout):
        if not rollout.stale:
            return
        if rollout.switched_at is not None:
            self.drain(rollout)
        # Each container stops within its own stop_grace_period (Compose set it as its StopTimeout).
        self.docker("stop", *rollout.stale, step="Stop the old containers")
        self.docker("rm", *rollout.stale, step="Stop the old containers")
        rollout.stale = []

    def drain(self, rollout):
        """Waits until the old containers serve no request any more (no open connection to their
        port, from half a second after the edge switched), at most app_drain_seconds."""
        drain = float(self.params["drain_seconds"])
        deadline = rollout.switched_at + drain
        time.sleep(max(0.0, rollout.switched_at + min(DRAIN_MIN, drain) - time.monotonic()))
        ports = dict((p["service"], p["port"]) for p in self.pools)
        old = [c for c in self.containers() if c.name in rollout.stale and c.service in ports and c.pid]
        while time.monotonic() < deadline and any(self.serving_requests(c, ports[c.service]) for c in old):
            time.sleep(0.1)
        rollout.drained = round(time.monotonic() - rollout.switched_at, 2)

    @staticmethod
    def serving_requests(container, port):
        """Whether the container has a connection open on its port (unknown: yes)."""
        try:
            tables = []
            for name in ("tcp", "tcp6"):
                path = "/proc/%d/net/%s" % (container.pid, name)
                if os.path.exists(path):
                    with open(path) as f:
                        tables.append(f.read())
        except (IOError, OSError):
            return True
        return sum(ro.open_connections(table, port) for table in tables) > 0

    def verify(self):
        found = self.containers()
        bad = [c for c in found if not c.serving]
        if bad:
            raise SwitchFailed("Check that every container of the stack is running and healthy", "; ".join(
                "%s is %s%s" % (c.name, c.state, "/" + c.health if c.health else "") for c in bad))
        missing = [s for s in self.services if not any(c.service == s for c in found)]
        if missing:
            raise SwitchFailed("Check that every container of the stack is running and healthy",
                               "no container of %s" % ", ".join(missing))

    def prune(self, refs, ids):
        """The project's stopped containers, the images of the app no release in the history uses
        (refs, ids: what the history names; never by force: an image another container uses
        stays), then Docker's dangling images and build cache (host-wide). Nothing is removed in
        check mode. Returns {containers, images, other: whether the host-wide prune removed some}."""
        containers = self.containers()
        stopped = sorted(c.name for c in containers if c.state in ("created", "exited", "dead"))
        used = set(ids) | set(c.image_id for c in containers if c.image_id and c.name not in stopped)
        _rc, out, _err = self.docker("image", "ls", "--no-trunc", "--format", "{{json .}}", check=False)
        rows = []
        for line in out.splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        images = image_prune.unused_images(rows, refs, used)
        if self.check_mode:
            return {"containers": stopped, "images": images, "other": False}
        if stopped:
            self.docker("rm", *stopped, check=False)
        removed = []
        if images:
            _rc, out, _err = self.docker("image", "rm", *images, check=False)
            untagged = set(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Untagged:"))
            removed = [ref for ref in images if ref in untagged]
        _rc, dangling, _err = self.docker("image", "prune", "--force", check=False)
        _rc, cache, _err = self.docker("builder", "prune", "--force", check=False)
        other = "deleted:" in dangling.lower() or image_prune.reclaimed_bytes(cache) > 0
        return {"containers": stopped, "images": removed, "other": other}

    def digests(self):
        return dict((c.service, c.image_id) for c in sorted(self.containers(), key=lambda c: c.number) if c.image_id)

    def retire_passwords(self):
        """Once no container uses an old Redis password any more, Redis keeps only the current one
        (CONFIG SET requirepass replaces every password of the default user)."""
        if "redis" not in self.services:
            return False
        new = self.params["redis_password"] or ""
        auth = 'AUTH "%s"\n' % new if new else ""
        out = self.exec_data("redis", ["redis-cli"], auth + "ACL GETUSER default\n", "Count the passwords the running Redis accepts")
        hashes = [line for line in out.splitlines() if len(line) == 64 and all(ch in "0123456789abcdef" for ch in line)]
        if len(hashes) <= 1:
            return False
        out = self.exec_data("redis", ["redis-cli"], '%sCONFIG SET requirepass "%s"\n' % (auth, new), "Retire the old Redis password")
        if out.strip().splitlines()[-1:] != ["OK"]:
            raise SwitchFailed("Retire the old Redis password", "redis-cli did not answer OK")
        return True
