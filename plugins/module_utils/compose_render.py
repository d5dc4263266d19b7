# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Compose project of a normalised service model (module_utils.service_model) on one host.

Pure data in, data out: the app role passes the model, what runs on this host, how each
image starts (module selfhost.stack.image_config) and the collection's own services' settings.
"""

from __future__ import annotations

import re

HELPERS = "/selfhost"  # the role's helper scripts, mounted read-only into every container
PROBE = [HELPERS + "/probe"]
WRAPPER = HELPERS + "/with-secrets"
POSTGRES_START = HELPERS + "/postgres-start"
NGINX_START = HELPERS + "/nginx-start"
BUILTINS = ("nginx", "postgres", "redis")
# Official postgres images before 18 keep the cluster in a subdirectory of their volume.
PGDATA_OLD_LAYOUT = "/var/lib/postgresql/data/pgdata"


class RenderError(ValueError):
    pass


def image_var(service, migration=None):
    """The .env variable holding a service's (or one of its migrations') image reference."""
    key = re.sub(r"[^A-Za-z0-9]", "_", service).upper()
    return "%s_MIGRATE_%d_IMAGE" % (key, migration) if migration else "%s_IMAGE" % key


def secrets_hash_var(service):
    """The .env variable holding the keyed hash of a service's secrets (its selfhost.secrets-hash
    label). The switch computes it on the host, where the key is (module_utils.app_switch)."""
    return "%s_SECRETS_HASH" % re.sub(r"[^A-Za-z0-9]", "_", service).upper()


def escape(value):
    """Compose interpolates ${VAR} in every value: user-given text keeps its dollars."""
    if isinstance(value, list):
        return [escape(v) for v in value]
    return value.replace("$", "$$") if isinstance(value, str) else value


def words(value):
    """A command or entrypoint as exec-form words (a string is a shell command)."""
    if value is None:
        return None
    return ["/bin/sh", "-c", value] if isinstance(value, str) else list(value)


def secret_key(service, name):
    return "%s__%s" % (service, name.replace(".", "_"))


class Project(object):
    """Builds the compose document. ctx keys: see the role's vars/main.yml (app_compose_context)."""

    def __init__(self, model, ctx):
        self.model = model
        self.ctx = ctx
        self.here = [s for s in ctx["services_here"] if s in model or s in BUILTINS]
        self.data_here = [s for s in ("postgres", "redis") if s in self.here]
        self.secrets = {}
        self.volumes = {}

    # -- pieces every service shares ---------------------------------------------------
    def runtime(self, service):
        """How the service's image starts (selfhost.stack.image_config); {} when the image is not here yet."""
        ref = (self.ctx.get("refs") or {}).get(service)
        return (self.ctx.get("images") or {}).get(ref) or {}

    def hardening(self, image, limits, read_only=True, cap_add=()):
        spec = {
            "image": image,
            "restart": self.ctx["restart"],
            "read_only": read_only,
            "security_opt": ["no-new-privileges:true"],
            "cap_drop": ["ALL"],
            "logging": {"driver": "local", "options": {
                "max-size": str(self.ctx["log_max_size"]), "max-file": str(self.ctx["log_max_file"])}},
            "deploy": {"resources": {"limits": {"memory": str(limits["memory"]), "cpus": str(limits["cpus"])}}},
        }
        if limits.get("pids"):
            spec["deploy"]["resources"]["limits"]["pids"] = int(limits["pids"])
        if cap_add:
            spec["cap_add"] = list(cap_add)
        return spec

    def healthcheck(self, test, timings):
        check = {"test": test, "interval": timings["interval"], "timeout": timings["timeout"],
                 "retries": int(timings["retries"]), "start_period": timings["start_period"]}
        if self.ctx.get("start_interval"):
            check["start_interval"] = self.ctx["start_interval"]
        return check

    def helpers_mount(self):
        return "./selfhost:%s:ro" % HELPERS

    def add_secret(self, service, name, target):
        key = secret_key(service, name)
        self.secrets[key] = {"file": "./secrets/%s/%s" % (service, name)}
        return {"source": key, "target": target}

    # -- the application's services ------------------------------------------------------
    def app_service(self, name, svc):
        runtime = self.runtime(name)
        spec = self.hardening("${%s}" % image_var(name), svc["limits"], svc["read_only"], svc["cap_add"])
        if svc["user"]:
            spec["user"] = svc["user"]
        env = dict((k, escape(v)) for k, v in sorted(svc["env"].items()))
        exported = []
        mounts = []
        for secret in svc["secrets"]:
            mounts.append(self.add_secret(name, secret["name"], secret["name"]))
            if secret["file_env"]:
                env[secret["file_env"]] = "/run/secrets/" + secret["name"]
            if secret["env"]:
                exported.append("%s=%s" % (secret["env"], secret["name"]))
        if svc["secrets"]:
            spec["labels"] = {"selfhost.secrets-hash": "${%s}" % secrets_hash_var(name)}
        entrypoint = words(svc["entrypoint"])
        command = words(svc["command"])
        if exported:
            env["SELFHOST_SECRET_ENV"] = " ".join(exported)
            image_entrypoint = runtime.get("entrypoint") or []
            spec["entrypoint"] = ["/bin/sh", WRAPPER] + escape(entrypoint if entrypoint is not None else image_entrypoint)
            command = command if command is not None else runtime.get("cmd") or []
        elif entrypoint is not None:
            spec["entrypoint"] = escape(entrypoint)
        if command is not None:
            spec["command"] = escape(command)
        if env:
            spec["environment"] = env
        if mounts:
            spec["secrets"] = mounts
        volumes = [self.helpers_mount()]
        for vol in svc["volumes"]:  # the model refuses the collection's own volume names
            self.volumes[vol["name"]] = {}
            volumes.append("%s:%s%s" % (vol["name"], escape(vol["path"]), ":ro" if vol["read_only"] else ""))
        spec["volumes"] = volumes
        if svc["tmpfs"]:
            spec["tmpfs"] = escape(list(svc["tmpfs"]))
        uses_data = [d for d in svc["depends_on"] if d in ("postgres", "redis")]
        spec["networks"] = ["frontend"] + (["backend"] if uses_data and self.data_here else [])
        deps = {}
        for dep in svc["depends_on"]:
            if dep not in self.here:
                continue  # on another host of the fleet
            healthy = dep in BUILTINS or self.model[dep]["healthcheck"]["kind"] != "none"
            deps[dep] = {"condition": "service_healthy" if healthy else "service_started"}
        if deps:
            spec["depends_on"] = deps
        spec["healthcheck"] = self.app_healthcheck(svc)
        # Compose makes it the container's StopTimeout, which every `docker stop` without --time
        # (and Swarm's task shutdown) waits before SIGKILL.
        spec["stop_grace_period"] = svc["stop_grace_period"]
        spec["deploy"]["replicas"] = int(svc["replicas"])
        return spec

    def app_healthcheck(self, svc):
        check = svc["healthcheck"]
        kind = check["kind"]
        if kind == "none":
            return {"disable": True}
        if kind == "http":
            test = ["CMD", "/bin/sh"] + PROBE + ["http", str(svc["port"]), escape(check["path"])]
        elif kind == "tcp":
            test = ["CMD", "/bin/sh"] + PROBE + ["tcp", str(svc["port"])]
        elif isinstance(check["test"], str):
            test = ["CMD-SHELL", escape(check["test"])]
        else:
            test = ["CMD"] + escape(list(check["test"]))
        return self.healthcheck(test, check)

    def migration_services(self, name, svc):
        """One-off services (profile `migrations`) that run a service's migrations in order."""
        out = {}
        base = self.app_service(name, svc)
        for number, migration in enumerate(svc["migrations"], 1):
            spec = dict((k, v) for k, v in base.items()
                        if k not in ("healthcheck", "depends_on", "restart", "stop_grace_period"))
            spec["deploy"] = {"resources": base["deploy"]["resources"]}
            spec["image"] = "${%s}" % image_var(name, number)
            spec["profiles"] = ["migrations"]
            spec["restart"] = "no"
            # As `docker compose run SERVICE COMMAND`: the entrypoint stays, the command is the migration's.
            spec["command"] = escape(words(migration["command"]))
            if svc["entrypoint"] is None and "SELFHOST_SECRET_ENV" in base.get("environment", {}):
                # The wrapper execs the migration image's own entrypoint, which need not be the service's.
                image = (self.ctx.get("images") or {}).get(migration["image"]) or {}
                spec["entrypoint"] = ["/bin/sh", WRAPPER] + escape(image.get("entrypoint") or [])
            out["%s-migrate-%d" % (name, number)] = spec
        return out

    # -- the collection's own services ---------------------------------------------------
    def nginx(self):
        c = self.ctx["nginx"]
        spec = self.hardening("${NGINX_IMAGE}", c["limits"], True, ["CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"])
        ports = ["%s:%s:80" % (c["bind"], c["http_port"])]
        volumes = ["./nginx:/etc/nginx/conf.d:ro", self.helpers_mount()]
        if c["tls"]:
            ports.append("%s:%s:443" % (c["bind"], c["https_port"]))
            volumes += ["./tls:/etc/nginx/tls:ro", "./acme:/var/www/acme:ro"]
        if c.get("static_from_image"):
            volumes.append("./static:/srv/static:ro")
        for vol in c.get("static_volumes") or []:
            volumes.append("%s:/srv/volumes/%s:ro" % (vol, vol))
        spec.update(ports=ports, volumes=volumes,
                    # /var/log/nginx stays a tmpfs for images whose log paths are files; the site logs to stdout/stderr.
                    tmpfs=["/var/cache/nginx", "/var/lib/nginx", "/var/log/nginx", "/run", "/tmp"],
                    networks=["frontend"])
        # No depends_on the routed services: the edge starts without them (the start script
        # leaves pools whose containers do not run yet out, and answers 503 for them).
        runtime = self.runtime("nginx")
        spec["entrypoint"] = ["/bin/sh", NGINX_START] + escape(runtime.get("entrypoint") or ["/docker-entrypoint.sh"])
        spec["command"] = escape(runtime.get("cmd") or ["nginx", "-g", "daemon off;"])
        spec["healthcheck"] = self.healthcheck(["CMD", "/bin/sh"] + PROBE + ["http", "80", "/healthz"],
                                               self.ctx["builtin_healthcheck"])
        return spec

    def postgres(self):
        c = self.ctx["postgres"]
        runtime = self.runtime("postgres")
        spec = self.hardening("${POSTGRES_IMAGE}", c["limits"], True, ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"])
        # The start script keeps the password out of the server's environment once the cluster exists.
        spec["entrypoint"] = ["/bin/sh", POSTGRES_START] + (runtime.get("entrypoint") or ["docker-entrypoint.sh"])
        spec["command"] = runtime.get("cmd") or ["postgres"]
        env = {"POSTGRES_DB": c["db"], "POSTGRES_USER": c["user"], "POSTGRES_PASSWORD_FILE": "/run/secrets/db_password"}
        if c["layout18"]:
            data = "postgres_data:/var/lib/postgresql"
        else:
            env["PGDATA"] = PGDATA_OLD_LAYOUT
            data = "postgres_data:/var/lib/postgresql/data"
        spec.update(environment=env, secrets=[self.add_secret("postgres", "db_password", "db_password")],
                    volumes=[data, self.helpers_mount()], tmpfs=["/var/run/postgresql", "/tmp"],
                    networks=["backend"], shm_size="128m")
        if c["publish"]:
            spec["ports"] = ["%s:%s:5432" % (c["publish"], c["port"])]
        timings = dict(self.ctx["builtin_healthcheck"], start_period="60s")
        spec["healthcheck"] = self.healthcheck(
            ["CMD-SHELL", 'pg_isready -q -h 127.0.0.1 -U "$${POSTGRES_USER}" -d "$${POSTGRES_DB}"'], timings)
        self.volumes["postgres_data"] = {}
        return spec

    def redis(self):
        c = self.ctx["redis"]
        spec = self.hardening("${REDIS_IMAGE}", c["limits"], True)
        # Started as the image's redis user, its own entrypoint neither chowns /data (which
        # root without capabilities cannot read once appendonlydir exists) nor switches users.
        # The server reads its configuration (requirepass) from a secret file it owns: no
        # password in argv, the environment or inspect.
        spec["user"] = str(c["uid"])
        spec["command"] = ["redis-server", "/run/secrets/redis.conf"]
        spec.update(secrets=[self.add_secret("redis", "redis.conf", "redis.conf")],
                    volumes=["redis_data:/data", self.helpers_mount()], tmpfs=["/tmp"], networks=["backend"])
        spec["labels"] = {"selfhost.secrets-hash": "${%s}" % secrets_hash_var("redis")}
        if c["publish"]:
            spec["ports"] = ["%s:%s:6379" % (c["publish"], c["port"])]
        # A NOAUTH answer proves the server is up without the check knowing the password.
        spec["healthcheck"] = self.healthcheck(
            ["CMD-SHELL", 'out=$$(redis-cli ping 2>&1); case "$$out" in *PONG*|*NOAUTH*) exit 0;; esac; exit 1'],
            self.ctx["builtin_healthcheck"])
        self.volumes["redis_data"] = {}
        return spec

    # -- the whole document --------------------------------------------------------------
    def render(self):
        services = {}
        for name in self.here:
            if name in BUILTINS:
                continue
            services[name] = self.app_service(name, self.model[name])
            services.update(self.migration_services(name, self.model[name]))
        if "postgres" in self.here:
            services["postgres"] = self.postgres()
        if "redis" in self.here:
            services["redis"] = self.redis()
        if "nginx" in self.here:
            services["nginx"] = self.nginx()
        networks = {}
        if any(s not in ("postgres", "redis") for s in self.here):
            networks["frontend"] = {}
        if self.data_here:
            publish = (self.ctx.get("postgres") or {}).get("publish") or (self.ctx.get("redis") or {}).get("publish")
            # Without published ports only the services that use them reach PostgreSQL and Redis.
            networks["backend"] = {"internal": not publish}
        doc = {"name": self.ctx["name"], "services": services, "networks": networks}
        if self.volumes:
            doc["volumes"] = dict(sorted(self.volumes.items()))
        if self.secrets:
            doc["secrets"] = dict(sorted(self.secrets.items()))
        return doc


def compose_project(model, ctx):
    return Project(model, ctx).render()


def owner(model, service, images, refs):
    """uid:gid that owns a service's secret files: its numeric secrets_owner or user, else the
    uid:gid the image resolves them (or its own USER) to; None while the image is not here (check mode)."""
    wanted = model[service]["secrets_owner"] or model[service]["user"] or ""
    uid, _sep, gid = wanted.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return "%s:%s" % (uid, gid or uid)
    info = (images or {}).get((refs or {}).get(service)) or {}
    if info.get("uid") is None:
        return None
    return "%d:%d" % (info["uid"], info["gid"])


def secret_files(model, services_here, images=None, refs=None, redis_uid=999):
    """The secret files of this host: [{service, name, owner}], owner None when not known yet."""
    files = []
    for name in services_here:
        if name in BUILTINS:
            continue
        for secret in model[name]["secrets"]:
            files.append({"service": name, "name": secret["name"], "owner": owner(model, name, images, refs)})
    if "postgres" in services_here:
        # Read by the image's entrypoint as root, before it drops to the postgres user.
        files.append({"service": "postgres", "name": "db_password", "owner": "0:0"})
    if "redis" in services_here:
        files.append({"service": "redis", "name": "redis.conf", "owner": "%d:0" % int(redis_uid)})
    return files


def image_users(model, services_here):
    """Per image reference, the user whose uid/gid its secret files get (secrets_owner, else user)."""
    users = {}
    for name in services_here:
        wanted = name in model and (model[name]["secrets_owner"] or model[name]["user"])
        if wanted and not all(part.isdigit() for part in wanted.split(":")):
            users[model[name]["image"]] = wanted  # a name: the image's /etc/passwd resolves it
    return users


def static_entries(model, services_here):
    """What the edge Nginx serves itself: [{service, path, from_image, volume, max_age}]."""
    return [dict(entry, service=name) for name in services_here if name in model for entry in model[name]["static"]]


def migrations(model, services_here):
    """The migrations of this host's services, in order: [{service, number, compose_service, image, var, command}]."""
    out = []
    for name in services_here:
        if name not in model:
            continue
        for number, migration in enumerate(model[name]["migrations"], 1):
            out.append({"service": name, "number": number, "compose_service": "%s-migrate-%d" % (name, number),
                        "image": migration["image"], "var": image_var(name, number), "command": migration["command"]})
    return out


def image_env(model, services_here):
    """The .env variables naming the images of this host's application services and migrations."""
    env = dict((image_var(s), model[s]["image"]) for s in services_here if s in model)
    env.update((m["var"], m["image"]) for m in migrations(model, services_here))
    return dict(sorted(env.items()))


def pools(model, services_here):
    """Nginx upstream pools: one per routed service on this host."""
    return [{"service": s, "pool": "%s_pool" % s.replace("-", "_"), "port": int(model[s]["port"])}
            for s in services_here if s in model and model[s]["routes"]]
