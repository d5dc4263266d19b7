# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The app role's service model (`app_services`, roles/app/README.md, "The service model"): validation and
normalisation, without I/O.

`normalize()` checks every service, collects every error (each starting with the dotted path of
the field, `app_services.<service>.<field>`) and raises them together as a `ModelError`; without
errors it returns the model with every key present, ready for rendering. Secret values are only
ever tested for being non-empty: no message and no output contains one.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

RESERVED_NAMES = ("postgres", "redis", "nginx")
# The collection's own volumes: PostgreSQL's and Redis' data.
RESERVED_VOLUMES = ("postgres_data", "redis_data")
# Where the collection mounts its own files into every application container; a volume or tmpfs
# at, above or below one of them would hide them.
RESERVED_MOUNTS = (("/run/secrets", "the service's secret files"),
                   ("/selfhost", "its helper scripts (healthcheck probe, secrets wrapper)"))
# Built-in secrets that may be empty: an empty Redis password runs Redis without one.
OPTIONAL_SECRETS = ("redis_password",)
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/opt",
               "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/lib/docker")
# A project directory may not be these or anything below them.
SYSTEM_TREES = ("/var/lib/docker", "/proc", "/sys", "/dev")

BUILTIN_LIMITS = {"memory": "512M", "cpus": "1.0", "pids": 512}
BUILTIN_TIMINGS = {"interval": "5s", "timeout": "3s", "retries": 12, "start_period": "30s"}
HEALTHCHECK_KINDS = ("http", "command", "tcp", "none")
ROLLOUTS = ("zero-downtime", "stop-first")
DEFAULT_MAX_AGE = "1h"
BUILTIN_STOP_GRACE_PERIOD = "30s"

NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,30}")
# Names of the one-off migration services (<service>-migrate-<n>), also with '_' (their .env image
# variables <SERVICE>_MIGRATE_<n>_IMAGE write both as '_').
MIGRATION_NAME_RE = re.compile(r".+[-_]migrate[-_][0-9]+")
SECRET_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,30}")
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
USER_RE = re.compile(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?")
DURATION_RE = re.compile(r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+")
MEMORY_RE = re.compile(r"([0-9]+(\.[0-9]+)?)[bkmgBKMG]?")
NUMBER_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
MAX_AGE_RE = re.compile(r"[0-9]+|([0-9]+(ms|s|m|h|d|w|M|y))+")
ROUTE_RE = re.compile(r"/[^\s{};]*")
# The healthcheck probe puts the path into a shell command line: no quoting characters either.
HTTP_PATH_RE = re.compile(r"/[^\s{};'\"`$\\]*")
ABS_PATH_RE = re.compile(r"/[^\s:]*")
CAP_RE = re.compile(r"[A-Z][A-Z0-9_]*")
DIGITS_RE = re.compile(r"[0-9]+")

# Docker's reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest].
_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                        r"|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

SERVICE_FIELDS = ("image", "command", "entrypoint", "user", "port", "routes", "healthcheck", "env", "secrets",
                  "secrets_owner", "volumes", "tmpfs", "read_only", "cap_add", "replicas", "limits", "depends_on",
                  "rollout", "stop_grace_period", "static", "migrations")
DEFAULT_FIELDS = ("limits", "healthcheck", "tmpfs", "read_only", "replicas", "stop_grace_period")
TIMING_FIELDS = ("interval", "timeout", "retries", "start_period")
LIMIT_FIELDS = ("memory", "cpus", "pids")


class ModelError(Exception):
    """Every error found in the model; ``errors`` holds the messages, sorted."""

    def __init__(self, errors):
        self.errors = sorted(set(errors))
        super().__init__("; ".join(self.errors))


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_int(value):
    """An int from an int or a string of digits; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and DIGITS_RE.fullmatch(value):
        return int(value)
    return None


def _empty(value):
    return value is None or str(value).strip() == ""


def _is_list(value):
    return isinstance(value, (list, tuple))


def validate_image_reference(ref):
    """Why ``ref`` is not a valid Docker image reference, or None when it is."""
    if not isinstance(ref, str) or not ref:
        return "must be a non-empty image reference string, got %s" % _show(ref)
    if re.search(r"\s", ref):
        return "image reference %s must not contain whitespace" % _show(ref)
    name, _sep, digest = ref.partition("@")
    if _sep and not _DIGEST_RE.fullmatch(digest):
        return "image reference %s: the digest must be sha256:<64 lower-case hex digits>" % _show(ref)
    slash = name.rfind("/")
    if name.rfind(":") > slash:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.fullmatch(tag):
            return "image reference %s: the tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}" % _show(ref)
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if not _DOMAIN_RE.fullmatch(parts.pop(0)):
            return "image reference %s: the registry must be host[:port]" % _show(ref)
    if not all(_COMPONENT_RE.fullmatch(p) for p in parts):
        return ("image reference %s: the repository must be lower-case components [a-z0-9] separated by "
                "'.', '_', '__' or '-', joined by '/'" % _show(ref))
    if len(name) > 255:
        return "image reference %s: the name is longer than 255 characters" % _show(ref)
    return None


def validate_project_dir(path):
    """Why ``path`` cannot be the project directory, or None when it can."""
    if not isinstance(path, str) or not path.startswith("/"):
        return "must be an absolute path, got %s" % _show(path)
    if posixpath.normpath(path) != path or path.startswith("//"):
        return "must be a normalised path (no trailing '/', '//', '.' or '..'), got %s" % _show(path)
    if path in SYSTEM_DIRS:
        return "%s is a system directory" % path
    for tree in SYSTEM_TREES:
        if path.startswith(tree + "/"):
            return "%s is inside the system directory %s" % (path, tree)
    return None


def service_name_problem(name):
    """Why ``name`` (a string matching NAME_RE) cannot be a service's name on its own, or None.

    The collection generates names from a service's: the one-off migration services
    <service>-migrate-<n>, the secrets <service>__<secret>, and on Swarm the service
    <stack>_<service>, a DNS label. Names that differ only in '-' and '_' are a matter of the
    whole model (_Model.services).
    """
    if name in RESERVED_NAMES:
        return "%s is a service of the collection itself; name yours differently" % name
    if name[-1] in "-_":
        return "a service name must end in a letter or digit (Swarm refuses others), got %s" % _show(name)
    if "__" in name:
        return ("a service name must not contain '__' (the collection names a service's secrets "
                "<service>__<secret>), got %s" % _show(name))
    if MIGRATION_NAME_RE.fullmatch(name):
        return ("%s ends in -migrate-<n> (with - or _), the names of the one-off services that run a service's "
                "migrations (<service>-migrate-<n>, image variable <SERVICE>_MIGRATE_<n>_IMAGE); name yours "
                "differently" % name)
    return None


def mount_point(path):
    """The directory an absolute mount path names, as Docker cleans it (/data/ and /data/x/.. are /data)."""
    return "/" + posixpath.normpath(path).lstrip("/")


def mount_problem(path):
    """Why a volume or tmpfs at the absolute ``path`` would hide the collection's files, or None."""
    point = mount_point(path)
    if point == "/":
        return "%s is the container's root; mount a directory below it" % path
    for reserved, what in RESERVED_MOUNTS:
        if point == reserved:
            return "%s is where the collection mounts %s" % (path, what)
        if reserved.startswith(point + "/"):
            return "%s would hide %s, where the collection mounts %s" % (path, reserved, what)
        if point.startswith(reserved + "/"):
            return "%s is inside %s, where the collection mounts %s" % (path, reserved, what)
    return None


def web_path_problem(path):
    """Why a route or static path (matching ROUTE_RE) is not one Nginx can match, or None.

    Nginx matches requests by their normalised path: a location with '//' or a '.' or '..'
    segment never matches, and the static files of a path are kept in static/<service>/<path>.
    """
    if "//" in path or any(part in (".", "..") for part in path.split("/")):
        return "must be a normalised path (no '//', '.' or '..' segments), got %s" % _show(path)
    return None


# What a value must be, as the messages say it.
A_PATH = "an absolute path without whitespace or ':'"
A_ROUTE = "a path starting with '/' without whitespace, '{', '}' or ';'"
AN_HTTP_PATH = "a path starting with '/' without whitespace or quotes"
A_SIZE = "a size > 0 such as 256M or 1g"
A_DURATION = "a duration such as 500ms, 5s or 1m30s"
A_MAX_AGE = "a time such as 7d, 1h, 30m or 0"
A_USER = "uid[:gid] or a name"
A_VARIABLE = "a variable name [A-Za-z_][A-Za-z0-9_]*"
A_SECRET_NAME = "a secret name [a-z][a-z0-9_]{0,30}"
A_VOLUME_NAME = "a volume name [a-z][a-z0-9_-]{0,30}"
A_CAPABILITY = "a capability name such as NET_ADMIN"


class _Checks:
    """Typed checks that append to one error list; each returns the normalised value or None."""

    def __init__(self, errors):
        self.errors = errors

    def add(self, path, text):
        self.errors.append("%s: %s" % (path, text))

    def fields(self, path, value, allowed):
        """``value`` if it is a dict (its unknown keys reported), else None."""
        if not isinstance(value, Mapping):
            self.add(path, "must be a dict, got %s" % _show(value))
            return None
        for key in value:
            if key not in allowed:
                self.add("%s.%s" % (path, key), "unknown field (known: %s)" % ", ".join(sorted(allowed)))
        return value

    def items(self, path, value):
        if not _is_list(value):
            self.add(path, "must be a list, got %s" % _show(value))
            return []
        return list(value)

    def integer(self, path, value, low, high=None):
        number = _as_int(value)
        if number is None or number < low or (high is not None and number > high):
            wanted = "from %d to %d" % (low, high) if high is not None else ">= %d" % low
            self.add(path, "must be an integer %s, got %s" % (wanted, _show(value)))
            return None
        return number

    def boolean(self, path, value):
        if not isinstance(value, bool):
            self.add(path, "must be true or false, got %s" % _show(value))
            return None
        return value

    def match(self, path, value, regex, what):
        """A string (an int becomes one) that ``regex`` matches entirely."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not regex.fullmatch(value):
            self.add(path, "must be %s, got %s" % (what, _show(value)))
            return None
        return value

    def command(self, path, value):
        """A non-empty string (shell form) or a non-empty list of strings (exec form; numbers become strings)."""
        if isinstance(value, str) and value.strip():
            return value
        scalar = (str, int, float)
        if _is_list(value) and value and all(isinstance(a, scalar) and not isinstance(a, bool) for a in value):
            return [a if isinstance(a, str) else str(a) for a in value]
        self.add(path, "must be a non-empty string or a non-empty list of strings, got %s" % _show(value))
        return None

    def path(self, path, value):
        return self.match(path, value, ABS_PATH_RE, A_PATH)

    def timings(self, path, value):
        """The healthcheck timings present in ``value``."""
        out = {}
        for key in TIMING_FIELDS:
            if key in value:
                where = "%s.%s" % (path, key)
                if key == "retries":
                    out[key] = self.integer(where, value[key], 1)
                else:
                    out[key] = self.match(where, value[key], DURATION_RE, A_DURATION)
        return out

    def limits(self, path, value):
        """The limits present in ``value``; pids may be null (no limit)."""
        out = {}
        if "memory" in value:
            memory = self.match(path + ".memory", value["memory"], MEMORY_RE, A_SIZE)
            if memory is not None and float(MEMORY_RE.fullmatch(memory).group(1)) <= 0:
                self.add(path + ".memory", "must be %s, got %s" % (A_SIZE, _show(value["memory"])))
                memory = None
            out["memory"] = memory
        if "cpus" in value:
            out["cpus"] = self.cpus(path + ".cpus", value["cpus"])
        if "pids" in value:
            out["pids"] = None if value["pids"] is None else self.integer(path + ".pids", value["pids"], 1)
        return out

    def cpus(self, path, value):
        """A number > 0 and <= 256, as a string such as "0.5"."""
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and NUMBER_RE.fullmatch(value):
            number = float(value)
        if number is None or not 0 < number <= 256:
            self.add(path, "must be a number > 0 and <= 256, got %s" % _show(value))
            return None
        return repr(number)

    def defaults(self, path, value):
        """The effective per-service defaults: the built-in ones, overridden by the valid ones given.

        Errors in ``value`` are reported once, under ``path``; the built-in value stays then.
        """
        out = {"limits": dict(BUILTIN_LIMITS), "timings": dict(BUILTIN_TIMINGS), "tmpfs": ["/tmp"],
               "read_only": True, "replicas": 1, "stop_grace_period": BUILTIN_STOP_GRACE_PERIOD}
        value = self.fields(path, {} if value is None else value, DEFAULT_FIELDS) or {}
        at = {key: "%s.%s" % (path, key) for key in DEFAULT_FIELDS}
        if self.fields(at["limits"], value.get("limits", {}), LIMIT_FIELDS) is not None:
            given = self.limits(at["limits"], value.get("limits", {}))
            out["limits"].update((k, v) for k, v in given.items() if v is not None or k == "pids")
        if self.fields(at["healthcheck"], value.get("healthcheck", {}), TIMING_FIELDS) is not None:
            given = self.timings(at["healthcheck"], value.get("healthcheck", {}))
            out["timings"].update((k, v) for k, v in given.items() if v is not None)
        if "tmpfs" in value:
            items = self.items(at["tmpfs"], value["tmpfs"])
            tmpfs, points = [], {}
            for i, path in enumerate(items):
                where = "%s[%d]" % (at["tmpfs"], i)
                tmpfs.append(self.path(where, path))
                if tmpfs[-1] is None:
                    continue
                problem = mount_problem(path)
                if problem is None and mount_point(path) in points:
                    problem = "%s is also the path of tmpfs[%d]" % (path, points[mount_point(path)])
                if problem:
                    self.add(where, problem)
                    tmpfs[-1] = None
                points.setdefault(mount_point(path), i)
            out["tmpfs"] = out["tmpfs"] if None in tmpfs or not _is_list(value["tmpfs"]) else tmpfs
        for key, check in (("read_only", self.boolean), ("replicas", lambda p, v: self.integer(p, v, 1)),
                           ("stop_grace_period", lambda p, v: self.match(p, v, DURATION_RE, A_DURATION))):
            checked = check(at[key], value[key]) if key in value else None
            out[key] = out[key] if checked is None else checked
        return out


class _Service:
    """One service: its field groups checked in order (later groups read earlier results)."""

    def __init__(self, checks, name, spec, defaults, secrets):
        self.checks = checks
        self.base = "app_services.%s" % name
        self.spec = spec
        self.defaults = defaults
        self.secrets = secrets
        self.variables = {}  # environment variable -> the field that sets it
        self.out = {}

    def at(self, field):
        return "%s.%s" % (self.base, field)

    def add(self, field, text):
        self.checks.add(self.at(field), text)

    def get(self, field, default=None):
        """The field's value; ``default`` when it is absent or null."""
        value = self.spec.get(field)
        return default if value is None else value

    def optional(self, field, check, *args, **kwargs):
        """``check`` of the field's value; ``default`` (None) when the field is absent or null."""
        value = self.spec.get(field)
        return kwargs.get("default") if value is None else check(self.at(field), value, *args)

    def entries(self, field, allowed, shorthand=None):
        """(path, dict) for each entry of the list ``field``; a string entry becomes {shorthand: it}."""
        for i, entry in enumerate(self.checks.items(self.at(field), self.get(field, []))):
            where = "%s[%d]" % (field, i)
            if shorthand and isinstance(entry, str):
                entry = {shorthand: entry}
            if self.checks.fields(self.at(where), entry, allowed) is not None:
                yield where, entry

    def required(self, where, entry, key, check, *args):
        """``check`` of ``entry[key]``, reported as required when missing."""
        if entry.get(key) is None:
            self.add("%s.%s" % (where, key), "required")
            return None
        return check(self.at("%s.%s" % (where, key)), entry[key], *args)

    def run(self):
        for group in (self.image, self.process, self.network, self.healthcheck, self.secret_files, self.env,
                      self.storage, self.resources, self.rollout, self.static, self.migrations):
            group()
        self.out["depends_on"] = self.checks.items(self.at("depends_on"), self.get("depends_on", []))
        return {key: self.out[key] for key in SERVICE_FIELDS}

    def image(self):
        self.out["image"] = self.spec.get("image")
        error = "required" if self.out["image"] is None else validate_image_reference(self.out["image"])
        if error:
            self.add("image", error)

    def process(self):
        for field in ("command", "entrypoint"):
            self.out[field] = self.optional(field, self.checks.command)
        for field in ("user", "secrets_owner"):
            self.out[field] = self.optional(field, self.checks.match, USER_RE, A_USER)

    def network(self):
        self.out["port"] = self.optional("port", self.checks.integer, 1, 65535)
        self.out["routes"] = [
            {"path": self.required(where, route, "path", self.web_path),
             "websocket": self.checks.boolean(self.at(where + ".websocket"), route.get("websocket", False))}
            for where, route in self.entries("routes", ("path", "websocket"), shorthand="path")]

    def web_path(self, path, value):
        """A route or static path: ROUTE_RE, normalised."""
        value = self.checks.match(path, value, ROUTE_RE, A_ROUTE)
        problem = value and web_path_problem(value)
        if problem:
            self.checks.add(path, problem)
            return None
        return value

    def healthcheck(self):
        # Without a healthcheck: a TCP check of the port. Routes need a port, so without one the
        # port's error is the only one (no follow-up error about zero-downtime without a check).
        tcp = self.spec.get("port") is not None or self.out["routes"]
        out = dict({"kind": "tcp" if tcp else "none", "path": None, "test": None}, **self.defaults["timings"])
        spec = self.spec.get("healthcheck")
        allowed = HEALTHCHECK_KINDS + TIMING_FIELDS
        if spec is not None and self.checks.fields(self.at("healthcheck"), spec, allowed) is not None:
            out.update(self.checks.timings(self.at("healthcheck"), spec))
            kinds = [k for k in HEALTHCHECK_KINDS if k in spec]
            if len(kinds) == 1:
                out["kind"], value, where = kinds[0], spec[kinds[0]], self.at("healthcheck." + kinds[0])
                if out["kind"] == "http":
                    out["path"] = self.checks.match(where, value, HTTP_PATH_RE, AN_HTTP_PATH)
                elif out["kind"] == "command":
                    out["test"] = self.checks.command(where, value)
                elif value is not True:
                    self.checks.add(where, "must be true (a kind is chosen by naming it), got %s" % _show(value))
            else:
                got = ", ".join(kinds) or "no kind"
                self.add("healthcheck", "needs exactly one of %s, got %s" % (", ".join(HEALTHCHECK_KINDS), got))
        self.out["healthcheck"] = out
        needs = ["routes"] if self.out["routes"] else []
        needs += ["the %s healthcheck" % out["kind"]] if out["kind"] in ("http", "tcp") and spec is not None else []
        if needs and self.spec.get("port") is None:
            self.add("port", "required by %s" % " and ".join(needs))

    def variable(self, field, name):
        """Checks a variable of the service's environment; the same one twice is an error."""
        if self.checks.match(self.at(field), name, VAR_RE, A_VARIABLE) is None:
            return None
        if name.startswith("SELFHOST_"):
            self.add(field, "variables starting with SELFHOST_ are reserved, got %s" % _show(name))
        elif name in self.variables:
            self.add(field, "%s is also set by %s" % (name, self.variables[name]))
        else:
            self.variables[name] = field
        return name

    def secret_files(self):
        self.out["secrets"], seen = [], set()
        for where, entry in self.entries("secrets", ("name", "env", "file_env"), shorthand="name"):
            name = self.required(where, entry, "name", self.checks.match, SECRET_NAME_RE, A_SECRET_NAME)
            problem = None
            if name is not None and name not in self.secrets:
                problem = "unknown secret %s (known: %s)" % (name, ", ".join(sorted(self.secrets)) or "none")
            elif name is not None and name not in OPTIONAL_SECRETS and _empty(self.secrets[name]):
                problem = "secret %s has an empty value" % name  # never the value itself
            elif name in seen:
                problem = "secret %s is listed twice" % name
            if problem:
                self.add(where + ".name", problem)
            seen.add(name)
            if entry.get("env") is not None and entry.get("file_env") is not None:
                self.add(where, "set env or file_env, not both")
            out = {"name": name}
            for key in ("env", "file_env"):
                out[key] = None if entry.get(key) is None else self.variable("%s.%s" % (where, key), entry[key])
            self.out["secrets"].append(out)

    def env(self):
        env, self.out["env"] = self.get("env", {}), {}
        if not isinstance(env, Mapping):
            self.add("env", "must be a dict of variable name to value, got %s" % _show(env))
            return
        for key, value in env.items():
            field = "env.%s" % key
            self.variable(field, key)
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (int, float)):
                value = str(value)
            elif not isinstance(value, str):
                self.add(field, "must be a string, number or boolean, got %s" % _show(value))
            self.out["env"][key] = value

    def storage(self):
        self.out["volumes"], mounts, names = [], {}, set()
        for where, vol in self.entries("volumes", ("name", "path", "backup", "read_only")):
            name = self.required(where, vol, "name", self.checks.match, NAME_RE, A_VOLUME_NAME)
            if name in RESERVED_VOLUMES:
                self.add(where + ".name", "%s is a volume of the collection itself (PostgreSQL's or Redis' data); "
                                          "name yours differently" % name)
            elif name in names:
                self.add(where + ".name", "volume %s is listed twice" % name)
            names.add(name)
            out = {"name": name, "path": self.required(where, vol, "path", self.mount, mounts)}
            for key in ("backup", "read_only"):
                out[key] = self.checks.boolean(self.at("%s.%s" % (where, key)), vol.get(key, False))
            self.out["volumes"].append(out)
        if self.get("tmpfs") is not None:
            tmpfs = self.checks.items(self.at("tmpfs"), self.spec["tmpfs"])
            self.out["tmpfs"] = [self.mount(self.at("tmpfs[%d]" % i), t, mounts) for i, t in enumerate(tmpfs)]
        else:  # checked in app_service_defaults already; here only against the service's volumes
            self.out["tmpfs"] = [self.mount(self.at("tmpfs"), t, mounts) for t in self.defaults["tmpfs"]]
        self.out["read_only"] = self.optional("read_only", self.checks.boolean, default=self.defaults["read_only"])

    def mount(self, path, value, mounts):
        """An absolute path that hides none of the collection's files and that no other volume or
        tmpfs of the service mounts on (``mounts``: mount point -> the field that has it)."""
        value = self.checks.path(path, value)
        if value is None:
            return None
        point, problem = mount_point(value), mount_problem(value)
        if problem is None and point in mounts:
            problem = "%s is also the path of %s" % (value, mounts[point])
        if problem:
            self.checks.add(path, problem)
        mounts.setdefault(point, path[len(self.base) + 1:])
        return value

    def resources(self):
        caps = self.checks.items(self.at("cap_add"), self.get("cap_add", []))
        self.out["cap_add"] = [self.checks.match(self.at("cap_add[%d]" % i), cap, CAP_RE, A_CAPABILITY)
                               for i, cap in enumerate(caps)]
        for i, cap in enumerate(self.out["cap_add"]):
            if cap is not None and cap.startswith("CAP_"):
                self.add("cap_add[%d]" % i, "name the capability without CAP_, got %s" % _show(cap))
        self.out["replicas"] = self.optional("replicas", self.checks.integer, 1, default=self.defaults["replicas"])
        self.out["limits"] = dict(self.defaults["limits"])
        spec = self.spec.get("limits")
        if spec is not None and self.checks.fields(self.at("limits"), spec, LIMIT_FIELDS) is not None:
            self.out["limits"].update(self.checks.limits(self.at("limits"), spec))

    def rollout(self):
        given = self.spec.get("rollout")
        rollout = given if given is not None else ROLLOUTS[0] if self.out["routes"] else ROLLOUTS[1]
        if rollout not in ROLLOUTS:
            self.add("rollout", "must be one of %s, got %s" % (", ".join(ROLLOUTS), _show(rollout)))
        elif rollout == ROLLOUTS[0] and self.out["healthcheck"]["kind"] == "none":
            why = "" if given is not None else " (the default for a service with routes)"
            self.add("rollout", "zero-downtime%s needs a healthcheck other than none; add one or set stop-first" % why)
        self.out["rollout"] = rollout
        self.out["stop_grace_period"] = self.optional("stop_grace_period", self.checks.match, DURATION_RE, A_DURATION,
                                                      default=self.defaults["stop_grace_period"])

    def static(self):
        self.out["static"] = []
        volumes = sorted(v["name"] for v in self.out["volumes"] if v["name"] is not None)
        for where, entry in self.entries("static", ("path", "from_image", "volume", "max_age")):
            out = {"path": self.required(where, entry, "path", self.web_path),
                   "from_image": None, "volume": entry.get("volume")}
            sources = [k for k in ("from_image", "volume") if entry.get(k) is not None]
            if len(sources) != 1:
                got = " and ".join(sources) or "neither"
                self.add(where, "needs exactly one of from_image, volume, got %s" % got)
            if entry.get("from_image") is not None:
                out["from_image"] = self.checks.path(self.at(where + ".from_image"), entry["from_image"])
                if out["from_image"] is not None and mount_point(out["from_image"]) == "/":
                    self.add(where + ".from_image", "%s is the image's whole filesystem, which Nginx would serve to "
                                                    "anyone; name the directory of the static files" % out["from_image"])
            if out["volume"] is not None and out["volume"] not in volumes:
                mine = ", ".join(volumes) or "none"
                self.add(where + ".volume", "%s is not one of this service's volumes (%s)" % (_show(out["volume"]), mine))
            max_age = entry.get("max_age", DEFAULT_MAX_AGE)
            out["max_age"] = self.checks.match(self.at(where + ".max_age"), max_age, MAX_AGE_RE, A_MAX_AGE)
            self.out["static"].append(out)

    def migrations(self):
        self.out["migrations"] = []
        for where, entry in self.entries("migrations", ("command", "image")):
            command = self.required(where, entry, "command", self.checks.command)
            error = validate_image_reference(entry["image"]) if "image" in entry else None
            if error:
                self.add(where + ".image", error)
            self.out["migrations"].append({"command": command, "image": entry.get("image", self.out["image"])})


class _Model:
    """The whole model: each service, then what spans services (paths, dependencies)."""

    def __init__(self, defaults, secrets, data_services):
        self.errors = []
        self.checks = _Checks(self.errors)
        self.defaults = self.checks.defaults("app_service_defaults", defaults)
        self.secrets = dict(secrets or {})
        self.data_services = sorted(data_services or ())

    def services(self, services):
        if not isinstance(services, Mapping):
            self.checks.add("app_services", "must be a dict of service name to specification, got %s" % _show(services))
            return {}
        if not services:
            self.checks.add("app_services", "must define at least one service")
        out = {}
        keys = {}  # a name's .env variable and pool key: my-api and my_api would share them
        for name in sorted(services, key=str):
            path = "app_services.%s" % name
            key = str(name).replace("-", "_")
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                self.checks.add(path, "a service name must match [a-z][a-z0-9_-]{0,30}, got %s" % _show(name))
            elif service_name_problem(name):
                self.checks.add(path, service_name_problem(name))
            elif key in keys:
                self.checks.add(path, "%s and %s differ only in - and _ (they would share the image variable %s and "
                                      "the Nginx pool %s_pool); name one differently"
                                % (keys[key], name, key.upper() + "_IMAGE", key))
            keys.setdefault(key, name)
            if self.checks.fields(path, services[name], SERVICE_FIELDS) is not None:
                out[name] = _Service(self.checks, name, services[name], self.defaults, self.secrets).run()
        self.paths(out)
        self.dependencies(out)
        return out

    def paths(self, services):
        """Each route or static path belongs to one service: Nginx has one location per path."""
        owners = {}  # path -> (service, field, what)
        for kind, what in (("routes", "a route"), ("static", "a static path")):
            for name, svc in services.items():
                for i, entry in enumerate(svc[kind]):
                    here = "app_services.%s.%s[%d].path" % (name, kind, i)
                    if entry["path"] in owners:
                        owner, field, owner_what = owners[entry["path"]]
                        whose = "this service, %s" % field if owner == name else "service %s" % owner
                        self.checks.add(here, "%s is also %s of %s" % (entry["path"], owner_what, whose))
                    elif entry["path"] is not None:
                        owners[entry["path"]] = (name, "%s[%d]" % (kind, i), what)

    def dependencies(self, services):
        for name, svc in services.items():
            seen = set()
            for i, dep in enumerate(svc["depends_on"]):
                field = "app_services.%s.depends_on[%d]" % (name, i)
                if dep == name:
                    self.checks.add(field, "a service cannot depend on itself")
                elif not isinstance(dep, str) or (dep not in services and dep not in self.data_services):
                    known = ", ".join(sorted(set(services) - {name}) + self.data_services) or "none"
                    self.checks.add(field, "unknown service %s (known: %s)" % (_show(dep), known))
                elif dep in seen:
                    self.checks.add(field, "%s is listed twice" % dep)
                else:
                    seen.add(dep)
        self.cycles({n: [d for d in s["depends_on"] if d in services and d != n] for n, s in services.items()})

    def cycles(self, graph):
        """Reports each dependency cycle once, at its alphabetically first service."""
        done, reported = set(), set()

        def visit(node, trail):
            if node in trail:
                cycle = trail[trail.index(node):]
                first = cycle.index(min(cycle))
                cycle = cycle[first:] + cycle[:first]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    text = "dependency cycle " + " -> ".join(cycle + cycle[:1])
                    self.checks.add("app_services.%s.depends_on" % cycle[0], text)
            elif node not in done:
                for dep in graph[node]:
                    visit(dep, trail + [node])
                done.add(node)

        for node in graph:
            visit(node, [])

    def redacted(self):
        """The messages, with any secret value that slipped into one (a user's typo) replaced."""
        values = {str(v) for v in self.secrets.values() if v is not None and len(str(v)) >= 8}
        for message in self.errors:
            for value in sorted(values, key=len, reverse=True):
                message = message.replace(value, "<redacted>")
            yield message


def normalize(services, defaults=None, secrets=None, data_services=("postgres", "redis"), project_dir=None):
    """The normalised ``app_services``, every key present (see roles/app/README.md); raises ModelError.

    ``defaults``: per-service defaults (limits, healthcheck timings, tmpfs, read_only, replicas,
    stop_grace_period).
    ``secrets``: name -> value of every secret there is; values are only tested for being non-empty.
    ``data_services``: the collection's data services that are enabled (valid in depends_on).
    ``project_dir``: when given, checked as ``app_project_dir``.
    """
    model = _Model(defaults, secrets, data_services)
    if project_dir is not None:
        error = validate_project_dir(project_dir)
        if error:
            model.checks.add("app_project_dir", error)
    out = model.services(services)
    if model.errors:
        raise ModelError(list(model.redacted()))
    return out
