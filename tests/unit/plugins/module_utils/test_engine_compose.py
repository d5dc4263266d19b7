"""The Compose engine of the switch (module_utils.engine_compose): what it decides and which
docker commands it runs, against a fake docker CLI that keeps a host's containers in memory.
The Compose project is the README's (an API with two replicas and a worker, a frontend, the
edge Nginx, PostgreSQL and Redis) as module_utils.compose_render renders it, with the variables
resolved as `docker compose config` resolves them."""

import copy
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.selfhost.stack.plugins.module_utils import app_switch as sw
from ansible_collections.selfhost.stack.plugins.module_utils import compose_render as cr
from ansible_collections.selfhost.stack.plugins.module_utils.engine import Rollout, SwitchFailed
from ansible_collections.selfhost.stack.plugins.module_utils.engine_compose import ComposeEngine, redis_requirepass
from ansible_collections.selfhost.stack.plugins.module_utils.image_config import normalise_ref
from ansible_collections.selfhost.stack.plugins.modules import app_switch as module

sys.path.insert(0, os.path.dirname(__file__))
import test_compose_render as fixtures  # noqa: E402


# -- normalise_ref and redis_requirepass --------------------------------------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("ref, listed", [
    ("postgres:16", "postgres:16"),
    ("docker.io/library/postgres:16", "postgres:16"),
    ("library/redis", "redis:latest"),
    ("docker.io/redis", "redis:latest"),
    ("docker.io/bitnami/redis:7.2", "bitnami/redis:7.2"),
    ("registry:5000/a/b", "registry:5000/a/b:latest"),
    ("registry:5000/a/b:v1", "registry:5000/a/b:v1"),
    ("registry.example.com/shop/api:1.4.2", "registry.example.com/shop/api:1.4.2"),
    ("postgres@" + DIGEST, "postgres@" + DIGEST),
    ("postgres:16@" + DIGEST, "postgres@" + DIGEST),
    ("docker.io/library/postgres:16@" + DIGEST, "postgres@" + DIGEST),
    ("registry:5000/a/b:v1@" + DIGEST, "registry:5000/a/b@" + DIGEST),
    ("registry:5000/a/b@" + DIGEST, "registry:5000/a/b@" + DIGEST),
])
def test_normalise_ref_gives_the_name_docker_image_inspect_lists(ref, listed):
    assert normalise_ref(ref) == listed


def test_redis_requirepass_reads_the_password_of_the_roles_config():
    config = '# Managed by selfhost.stack\ndir /data\nappendonly yes\nrequirepass "rd-pässwörd with spaces"\n'
    assert redis_requirepass(config) == "rd-pässwörd with spaces"
    assert redis_requirepass("dir /data\nappendonly yes\n") == ""
    assert redis_requirepass("") == "" and redis_requirepass(None) == ""
    assert redis_requirepass('# requirepass "commented"\n  requirepass "indented"\n') == ""
    assert redis_requirepass('requirepass ""\n') == ""


# -- a host's docker, in memory ------------------------------------------------------------------------

README_SERVICES = {
    "api": {"image": "registry.example.com/shop/api:1.4.2", "port": 8000,
            "routes": ["/api/", {"path": "/ws/", "websocket": True}], "healthcheck": {"http": "/api/health"},
            "secrets": [{"name": "database_url", "env": "DATABASE_URL"}, {"name": "secret_key", "env": "SESSION_KEY"}],
            "volumes": [{"name": "uploads", "path": "/data/uploads", "backup": True}],
            "depends_on": ["postgres", "redis"], "replicas": 2},
    "worker": {"image": "registry.example.com/shop/api:1.4.2", "command": ["node", "worker.js"],
               "secrets": [{"name": "redis_url", "env": "REDIS_URL"}],
               "volumes": [{"name": "uploads", "path": "/data/uploads"}], "depends_on": ["redis"]},
    "web": {"image": "registry.example.com/shop/web:1.4.2", "port": 8080, "routes": ["/"]},
}
ROUTED = ["api", "web"]
SERVICES = ["api", "worker", "web", "nginx", "postgres", "redis"]
POOLS = [{"service": "api", "pool": "api_pool", "port": 8000}, {"service": "web", "pool": "web_pool", "port": 8080}]


def resolve(value, env):
    if isinstance(value, dict):
        return dict((k, resolve(v, env)) for k, v in value.items())
    if isinstance(value, list):
        return [resolve(v, env) for v in value]
    if isinstance(value, str):
        return re.sub(r"(?<!\$)\$\{([A-Za-z0-9_]+)\}", lambda m: env[m.group(1)], value).replace("$$", "$")
    return value


def readme_config(api_image="registry.example.com/shop/api:1.4.2", secrets_hash="a" * 64):
    """`docker compose config --format json` of the README's project: services, resolved."""
    images = dict(fixtures.IMAGES)
    images[api_image] = images["registry.example.com/shop/api:1.4.2"] = fixtures.IMAGES[fixtures.API]
    images["registry.example.com/shop/web:1.4.2"] = fixtures.IMAGES[fixtures.WEB]
    services = copy.deepcopy(README_SERVICES)
    services["api"]["image"] = services["worker"]["image"] = api_image
    doc, model = fixtures.render(services, images=images)
    env = dict(cr.image_env(model, SERVICES), NGINX_IMAGE=fixtures.NGINX, POSTGRES_IMAGE=fixtures.PG16,
               REDIS_IMAGE=fixtures.REDIS)
    env.update((cr.secrets_hash_var(s), secrets_hash) for s in doc["services"])
    return resolve(doc["services"], env)


class Host(object):
    """The docker CLI of one host: the project's containers and images, every command it ran."""

    def __init__(self, config, images):
        self.config = config
        self.images = images  # reference -> image ID
        self.containers = {}
        self.calls = []
        self.new_state = {}  # service -> (state, health) of the containers created from now on

    def config_hash(self, service):
        return hashlib.sha256(json.dumps(self.config[service], sort_keys=True).encode()).hexdigest()[:16]

    def healthchecked(self, service):
        check = self.config[service].get("healthcheck")
        return bool(check) and not check.get("disable")

    def replicas(self, service):
        return int((self.config[service].get("deploy") or {}).get("replicas") or 1)

    def add(self, service, number, config_hash=None, image_id=None, state="running", health="default"):
        name = "shop-%s-%d" % (service, number)
        if health == "default":
            health = "healthy" if self.healthchecked(service) else None
        self.created = getattr(self, "created", 0) + 1
        self.containers[name] = {"service": service, "number": number, "state": state, "health": health,
                                 "hash": config_hash or self.config_hash(service),
                                 "image": image_id or self.images[self.config[service]["image"]],
                                 "id": "%064x" % self.created}  # a name comes back, an ID never
        return name

    def create(self, service, number):
        state, health = self.new_state.get(service, ("running", "default"))
        return self.add(service, number, state=state, health=health)

    def of(self, service):
        return [c for c in self.containers.values() if c["service"] == service]

    def up_to_date(self, c):
        return c["hash"] == self.config_hash(c["service"]) and c["image"] == self.images[self.config[c["service"]]["image"]]

    def inspect(self, name):
        c = self.containers[name]
        state = {"Status": c["state"], "Pid": 4000 + c["number"] if c["state"] == "running" else 0}
        if c["health"] is not None:
            state["Health"] = {"Status": c["health"], "Log": [{"Output": "probe said %s" % c["health"]}]}
        return {"Id": c["id"], "Name": "/" + name, "State": state, "Config": {"Labels": {
            "com.docker.compose.project": "shop", "com.docker.compose.service": c["service"],
            "com.docker.compose.container-number": str(c["number"]), "com.docker.compose.config-hash": c["hash"],
            "com.docker.compose.image": c["image"], "com.docker.compose.oneoff": "False"}}}

    # -- the CLI -------------------------------------------------------------------------------------
    def run_command(self, argv, cwd=None, data=None, **kwargs):
        args = list(argv[1:])
        if args[0] == "compose":
            rest = args[1:]
            while rest and rest[0] in ("--project-directory", "--file", "--env-file"):
                rest = rest[2:]
            args = ["compose"] + rest
        self.calls.append(args)
        if args[0] == "ps":
            return 0, "".join(n + "\n" for n in sorted(self.containers)), ""
        if args[0] == "inspect" and args[1] == "--format":
            c = self.containers.get(args[-1])
            return (0, json.dumps(self.inspect(args[-1])["State"].get("Health")) + "\n", "") if c else (1, "", "No such object")
        if args[0] == "inspect":
            return 0, json.dumps([self.inspect(n) for n in args[1:] if n in self.containers]), ""
        if args[:2] == ["image", "inspect"] and args[2] != "--format":
            # Docker finds an image under any spelling of its name; it lists the short one.
            found = [{"Id": self.images[normalise_ref(r)], "RepoTags": [normalise_ref(r)], "RepoDigests": []}
                     for r in args[2:] if normalise_ref(r) in self.images]
            return (0 if len(found) == len(args) - 2 else 1), json.dumps(found), ""
        if args[:2] == ["image", "ls"]:
            return 0, "".join(json.dumps({"Repository": ref.rsplit(":", 1)[0], "Tag": ref.rsplit(":", 1)[1], "ID": image_id})
                              + "\n" for ref, image_id in sorted(self.images.items())), ""
        if args[:2] == ["image", "rm"]:
            used = set(c["image"] for c in self.containers.values())
            out, err = [], []
            for ref in args[2:]:
                if self.images.get(ref) in used:
                    err.append("Error response from daemon: conflict: unable to remove repository reference "
                               "\"%s\" (must force) - container is using its referenced image" % ref)
                elif ref in self.images:
                    out.append("Untagged: %s" % ref)
                    self.images.pop(ref)
            return (1 if err else 0), "\n".join(out) + "\n", "\n".join(err)
        if args[:2] in (["image", "prune"], ["builder", "prune"]):
            return 0, "Total reclaimed space: 0B\n", ""
        if args[0] in ("image", "volume"):
            return 1, "", "Error: No such %s" % args[0]
        if args[0] == "stop":
            for name in args[1:]:
                self.containers[name].update(state="exited", health=None)
            return 0, "", ""
        if args[0] == "rm":
            for name in args[1:]:
                if name != "--force":
                    self.containers.pop(name, None)
            return 0, "", ""
        if args[:4] == ["compose", "config", "--format", "json"]:
            return 0, json.dumps({"name": "shop", "services": self.config}), ""
        if args[:3] == ["compose", "config", "--hash"]:
            return 0, "".join("%s %s\n" % (s, self.config_hash(s)) for s in self.config), ""
        if args[:2] == ["compose", "up"]:
            return self.up(args[2:])
        if args[:2] in (["compose", "exec"], ["compose", "restart"]):
            return 0, "", ""
        raise AssertionError("unexpected docker call %r" % args)

    def up(self, args):
        flags, names, scale = set(), [], {}
        i = 0
        while i < len(args):
            if args[i] in ("--pull", "--scale"):
                if args[i] == "--scale":
                    service, count = args[i + 1].split("=")
                    scale[service] = int(count)
                i += 2
            elif args[i].startswith("--"):
                flags.add(args[i])
                i += 1
            else:
                names.append(args[i])
                i += 1
        targets = names or [s for s in self.config if "migrations" not in (self.config[s].get("profiles") or [])]
        for service in targets:
            have = self.of(service)
            wanted = scale.get(service, self.replicas(service))
            if "--no-recreate" in flags:
                number = max([c["number"] for c in have] or [0])
                for _i in range(wanted - len(have)):
                    number += 1
                    self.create(service, number)
            elif len(have) != wanted or not all(self.up_to_date(c) for c in have):
                for c in have:
                    self.containers.pop("shop-%s-%d" % (service, c["number"]))
                for number in range(1, wanted + 1):
                    self.create(service, number)
        if "--remove-orphans" in flags:
            for name in [n for n, c in self.containers.items() if c["service"] not in self.config]:
                self.containers.pop(name)
        return 0, "", ""

    def ran(self, *head):
        return [c for c in self.calls if c[:len(head)] == list(head)]


class FakeModule(object):
    check_mode = False

    def __init__(self, host):
        self.run_command = host.run_command


IMAGES = {"registry.example.com/shop/api:1.4.2": "sha256:" + "a1" * 32,
          "registry.example.com/shop/api:1.5.0": "sha256:" + "a2" * 32,
          "registry.example.com/shop/web:1.4.2": "sha256:" + "b1" * 32,
          fixtures.NGINX: "sha256:" + "c1" * 32, fixtures.PG16: "sha256:" + "d1" * 32, fixtures.REDIS: "sha256:" + "e1" * 32}


def params(project_dir, **overrides):
    args = {"project_dir": str(project_dir), "name": "shop", "host": "web1", "services": SERVICES, "routed": ROUTED,
            "pools": POOLS, "health_timeout": 3, "drain_seconds": 0}
    args.update(overrides)
    result = ArgumentSpecValidator(module.argument_spec()).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


@pytest.fixture
def project(tmp_path):
    p = sw.Project(str(tmp_path / "shop"), False)
    p.ensure_directories()
    return p


def engine_on(host, project, **overrides):
    return ComposeEngine(FakeModule(host), params(project.path, **overrides), project)


STAGED = {"compose": "/opt/shop/.staged-compose", "env": "/opt/shop/.staged-env"}


def running_host(config=None):
    """Every service of the README's project running, up to date."""
    host = Host(config or readme_config(), IMAGES)
    for service in host.config:
        if "migrations" not in (host.config[service].get("profiles") or []):
            for number in range(1, host.replicas(service) + 1):
                host.add(service, number)
    return host


def pools_file(project):
    return Path(project.full("nginx/upstreams.pools")).read_text()


# -- routed services: new containers beside the old ---------------------------------------------------


def test_an_outdated_routed_service_gets_new_containers_beside_the_old_ones(project):
    host = running_host()
    # The API's containers run the previous release (another configuration and image).
    for name in ("shop-api-1", "shop-api-2"):
        host.containers[name].update(hash="previous", image=IMAGES["registry.example.com/shop/api:1.5.0"])
    engine = engine_on(host, project)
    engine.validate(STAGED)
    rollout = engine.converge(Rollout())
    assert host.ran("compose", "up") == [["compose", "up", "--detach", "--no-recreate", "--pull", "missing",
                                          "--scale", "api=4", "api"]]
    assert rollout.stale == ["shop-api-1", "shop-api-2"]
    assert "api: shop-api-3, shop-api-4 started beside shop-api-1, shop-api-2" in rollout.changed
    # The edge sends traffic to the new ones (a graceful reload), while the old ones drain.
    pools = pools_file(project)
    assert "server shop-api-3:8000" in pools and "server shop-api-4:8000" in pools and "shop-api-1" not in pools
    assert "server shop-web-1:8080" in pools
    assert host.ran("compose", "exec", "-T", "nginx") and rollout.switched_at is not None
    assert not host.ran("stop") and host.containers["shop-api-1"]["state"] == "running"
    engine.finish(rollout)
    # Each old container stops within its own stop_grace_period: no --time of the engine's own.
    assert host.ran("stop") == [["stop", "shop-api-1", "shop-api-2"]]
    assert host.ran("rm") == [["rm", "shop-api-1", "shop-api-2"]]
    assert rollout.stale == [] and sorted(c["number"] for c in host.of("api")) == [3, 4]
    engine.verify()


def test_a_new_container_that_takes_the_name_of_a_removed_leftover_is_seen_as_new(project):
    # A switch interrupted by a host restart left shop-api-3 created, never started: the next run
    # removes it, and Compose gives the new container its number (and name) again.
    host = running_host()
    for name in ("shop-api-1", "shop-api-2"):
        host.containers[name].update(hash="previous", image=IMAGES["registry.example.com/shop/api:1.5.0"])
    host.add("api", 3, state="created", health=None)
    del host.containers["shop-api-2"]  # one old container left: the new ones are numbered 2 and 3
    engine = engine_on(host, project)
    engine.validate(STAGED)
    rollout = engine.converge(Rollout())
    assert ["rm", "--force", "shop-api-3"] in host.calls
    assert "api: shop-api-2, shop-api-3 started beside shop-api-1" in rollout.changed, rollout.changed
    assert rollout.stale == ["shop-api-1"]


def test_good_containers_beside_bad_ones_are_kept_and_no_new_one_starts(project):
    """A revert after a failed gate: the release's own containers still run beside the new ones."""
    host = running_host()
    host.add("api", 3, config_hash="the-failed-release", image_id=IMAGES["registry.example.com/shop/api:1.5.0"])
    host.add("api", 4, config_hash="the-failed-release", image_id=IMAGES["registry.example.com/shop/api:1.5.0"])
    engine = engine_on(host, project)
    rollout = engine.converge(Rollout())
    assert host.ran("compose", "up") == []
    assert rollout.stale == ["shop-api-3", "shop-api-4"]
    assert "api: back to shop-api-1, shop-api-2, shop-api-3, shop-api-4 drain" in rollout.changed
    pools = pools_file(project)
    assert "server shop-api-1:8000" in pools and "server shop-api-2:8000" in pools and "shop-api-3" not in pools
    engine.finish(rollout)
    assert host.ran("stop") == [["stop", "shop-api-3", "shop-api-4"]]
    assert sorted(c["number"] for c in host.of("api")) == [1, 2]


def test_a_new_container_that_exits_is_removed_and_the_old_ones_keep_serving(project):
    host = running_host()
    for name in ("shop-api-1", "shop-api-2"):
        host.containers[name]["hash"] = "previous"
    host.new_state["api"] = ("exited", None)
    engine = engine_on(host, project)
    before_pools = project.read("nginx/upstreams.pools")
    with pytest.raises(SwitchFailed) as failed:
        engine.converge(Rollout())
    assert failed.value.check == "container health"
    assert "the old ones keep serving" in failed.value.msg and "shop-api-3 is exited" in failed.value.msg
    assert host.ran("rm", "--force") == [["rm", "--force", "shop-api-3", "shop-api-4"]]
    assert sorted(host.containers) == ["shop-api-1", "shop-api-2", "shop-nginx-1", "shop-postgres-1", "shop-redis-1",
                                       "shop-web-1", "shop-worker-1"]
    assert all(host.containers[n]["state"] == "running" for n in ("shop-api-1", "shop-api-2"))
    assert not host.ran("stop")
    assert project.read("nginx/upstreams.pools") == before_pools


# -- PostgreSQL and Redis ---------------------------------------------------------------------------------


def test_a_changed_postgres_configuration_is_refused_unless_allowed(project):
    host = running_host()
    host.containers["shop-postgres-1"]["hash"] = "previous"
    with pytest.raises(SwitchFailed) as failed:
        engine_on(host, project).validate(STAGED)
    assert failed.value.details["before_change"]
    assert failed.value.check == "Refuse to recreate PostgreSQL or Redis unless app_data_restart_allowed is true"
    assert "This run would recreate postgres (shop-postgres-1 has another configuration)" in failed.value.msg
    assert "app_data_restart_allowed=true" in failed.value.msg
    assert not host.ran("compose", "up")
    engine_on(host, project, data_restart_allowed=True).validate(STAGED)


def test_redis_on_another_image_is_refused_naming_it(project):
    host = running_host()
    host.containers["shop-redis-1"]["image"] = "sha256:" + "99" * 32
    with pytest.raises(SwitchFailed, match=r"would recreate redis \(shop-redis-1 runs another image\)"):
        engine_on(host, project).validate(STAGED)


def test_data_services_that_are_stopped_or_new_are_not_refused(project):
    host = running_host()
    host.containers["shop-redis-1"].update(state="exited", health=None)
    del host.containers["shop-postgres-1"]
    state = engine_on(host, project).validate(STAGED)
    assert state["outdated"]["postgres"] == "no container" and state["outdated"]["redis"] == "shop-redis-1 is exited"


def test_a_changed_application_service_is_not_a_data_restart(project):
    host = running_host()
    host.containers["shop-worker-1"]["hash"] = "previous"
    state = engine_on(host, project).validate(STAGED)
    assert state["outdated"] == {"worker": "shop-worker-1 has another configuration"}


# -- a whole deploy of the README's project ---------------------------------------------------------------


def test_a_worker_without_healthcheck_serves_once_it_runs(project):
    host = Host(readme_config(), IMAGES)  # a host that runs nothing yet
    engine = engine_on(host, project)
    engine.validate(STAGED)
    rollout = Rollout()
    engine.prepare(rollout)
    assert host.ran("compose", "up")[0] == ["compose", "up", "--detach", "--no-deps", "--pull", "missing", "postgres", "redis"]
    engine.converge(rollout)
    assert host.ran("compose", "up")[-1] == ["compose", "up", "--detach", "--remove-orphans", "--pull", "missing"]
    worker = engine.containers()
    worker = [c for c in worker if c.service == "worker"]
    assert [(c.name, c.state, c.health, c.serving) for c in worker] == [("shop-worker-1", "running", None, True)]
    assert "Health" not in host.inspect("shop-worker-1")["State"]
    engine.finish(rollout)
    engine.verify()
    assert sorted(engine.digests()) == ["api", "nginx", "postgres", "redis", "web", "worker"]
    assert sorted(c["number"] for c in host.of("api")) == [1, 2]


def test_a_worker_that_exits_fails_the_start(project):
    host = Host(readme_config(), IMAGES)
    host.new_state["worker"] = ("exited", None)
    engine = engine_on(host, project, health_timeout=1)  # a container may restart: waited for until the timeout
    engine.validate(STAGED)
    rollout = Rollout()
    engine.prepare(rollout)
    with pytest.raises(SwitchFailed) as failed:
        engine.converge(rollout)
    assert failed.value.check == "Start the stack and wait until every container is healthy"
    assert failed.value.msg.startswith("not healthy within 1s: shop-worker-1 is exited")


def test_the_ids_of_images_referenced_under_another_spelling(project):
    host = Host(readme_config(), {"postgres:16": "sha256:p", "redis:latest": "sha256:r", "registry:5000/a/b:latest": "sha256:b"})
    engine = engine_on(host, project)
    assert engine.image_ids(["docker.io/library/postgres:16", "library/redis", "registry:5000/a/b", "missing:1", ""]) == {
        "docker.io/library/postgres:16": "sha256:p", "library/redis": "sha256:r", "registry:5000/a/b": "sha256:b",
        "missing:1": None}
    assert host.ran("image", "inspect") == [["image", "inspect", "docker.io/library/postgres:16", "library/redis",
                                             "missing:1", "registry:5000/a/b"]]  # one call for all


def test_the_switch_deploys_the_readme_project_with_this_engine(tmp_path):
    """The frame and the engine together on a fresh host: written, started, gated, recorded."""
    from ansible_collections.selfhost.stack.plugins.module_utils import releases
    host = Host(readme_config(), IMAGES)
    files = [{"path": "compose.yaml", "content": "# the README's project\n", "mode": "0640"},
             {"path": ".env", "content": "API_IMAGE=registry.example.com/shop/api:1.4.2\n", "mode": "0640"}]
    secrets = [{"service": "worker", "name": "redis_url", "content": "redis://:pw@redis:6379/0"},
               {"service": "redis", "name": "redis.conf", "content": 'dir /data\nrequirepass "pw"\n'}]
    p = params(tmp_path / "shop", version="1.4.2", files=files, secret_files=secrets, redis_password="pw")
    switch = sw.Switch(FakeModule(host), ComposeEngine, p)
    result = switch.run()
    assert result["changed"] and result["current"].endswith("-1.4.2")
    assert releases.read_release(p["project_dir"], result["current"])["digests"]["worker"] == IMAGES[
        "registry.example.com/shop/api:1.4.2"]
    assert sorted(host.containers) == ["shop-api-1", "shop-api-2", "shop-nginx-1", "shop-postgres-1", "shop-redis-1",
                                       "shop-web-1", "shop-worker-1"]
    assert "server shop-api-1:8000" in pools_file(switch.project)
    assert not os.path.exists(os.path.join(p["project_dir"], ".deploy.lock"))


def drained_after(project, monkeypatch, busy_checks, drain_seconds):
    """Seconds the old containers drained when they had a request open for `busy_checks` checks."""
    host = running_host()
    for name in ("shop-api-1", "shop-api-2"):
        host.containers[name].update(hash="previous", image=IMAGES["registry.example.com/shop/api:1.5.0"])
    engine = engine_on(host, project, drain_seconds=drain_seconds)
    engine.validate(STAGED)
    rollout = engine.converge(Rollout())
    checks = []

    def serving(container, port):
        checks.append((container.name, container.pid, port))
        return len(checks) <= busy_checks
    monkeypatch.setattr(engine, "serving_requests", serving)
    engine.finish(rollout)
    assert host.ran("stop") == [["stop", "shop-api-1", "shop-api-2"]]
    assert checks and all(port == 8000 and pid > 0 for _name, pid, port in checks)
    return rollout.drained


def test_old_containers_stop_once_they_serve_no_request(project, monkeypatch):
    drained = drained_after(project, monkeypatch, busy_checks=2, drain_seconds=5)
    assert 0.5 <= drained < 2  # half a second at least, then as soon as the connections closed


def test_old_containers_with_requests_open_wait_out_app_drain_seconds(project, monkeypatch):
    assert drained_after(project, monkeypatch, busy_checks=10 ** 6, drain_seconds=1.2) >= 1.2


# -- pruning ------------------------------------------------------------------------------------

def test_prune_removes_the_apps_images_no_release_uses_and_keeps_the_rest(project):
    host = running_host()
    host.images = dict(IMAGES, **{"registry.example.com/shop/api:1.3.0": "sha256:" + "a0" * 32,
                                  "registry.example.com/shop/web:broken": "sha256:" + "b0" * 32,
                                  "registry.example.com/other/tool:1": "sha256:" + "f0" * 32})
    host.add("api", 9, state="exited", health=None)
    kept = ["registry.example.com/shop/api:1.4.2", "registry.example.com/shop/web:1.4.2", fixtures.NGINX,
            fixtures.PG16, fixtures.REDIS]
    pruned = engine_on(host, project).prune(kept, {IMAGES["registry.example.com/shop/api:1.5.0"]})
    # 1.5.0 is a release's (by ID); the other repository is not the app's; the running containers' stay.
    assert pruned == {"containers": ["shop-api-9"], "images": ["registry.example.com/shop/api:1.3.0",
                                                                "registry.example.com/shop/web:broken"], "other": False}
    assert sorted(host.images) == sorted(set(IMAGES) | {"registry.example.com/other/tool:1"})
    assert "shop-api-9" not in host.containers
    assert host.ran("image", "prune") == [["image", "prune", "--force"]]
    assert host.ran("builder", "prune") == [["builder", "prune", "--force"]]


def test_prune_never_forces_and_reports_only_what_docker_removed(project):
    host = running_host()
    # Another project's container runs an old image of the app's repository: it stays.
    host.images["registry.example.com/shop/api:1.3.0"] = "sha256:" + "a0" * 32
    host.containers["other-1"] = dict(host.containers["shop-api-1"], image="sha256:" + "a0" * 32)
    engine = engine_on(host, project)
    engine.containers = lambda: []  # only this project's containers are the engine's
    pruned = engine.prune(["registry.example.com/shop/api:1.4.2"], set())
    assert pruned["images"] == ["registry.example.com/shop/api:1.5.0"]  # what Docker untagged, not what it refused
    assert "registry.example.com/shop/api:1.3.0" in host.images
    assert all("--force" not in call for call in host.ran("image", "rm"))


def test_prune_in_check_mode_lists_and_removes_nothing(project):
    host = running_host()
    host.images["registry.example.com/shop/api:1.3.0"] = "sha256:" + "a0" * 32
    engine = engine_on(host, project)
    engine.check_mode = True
    pruned = engine.prune(["registry.example.com/shop/api:1.4.2"], set())
    assert pruned["images"] == ["registry.example.com/shop/api:1.3.0"]
    assert "registry.example.com/shop/api:1.3.0" in host.images
    assert not host.ran("image", "rm") and not host.ran("image", "prune") and not host.ran("builder", "prune")


# -- a rotated database password --------------------------------------------------------------------

def test_a_rotated_database_password_changes_right_before_the_new_containers_start(project):
    """From ALTER ROLE on, the old containers cannot open new connections: nothing but the start of
    the new ones comes between it and the roll (the project's state is read before it)."""
    host = running_host()
    for name in ("shop-api-1", "shop-api-2"):
        host.containers[name].update(hash="previous")
    engine = engine_on(host, project, db_password="new-Pa55", db_user="shop")
    engine.running_passwords["postgres/db_password"] = "old-Pa55"
    engine.validate(STAGED)
    engine.converge(Rollout())
    calls = [c[:3] for c in host.calls]
    alter = calls.index(["compose", "exec", "-T"])
    assert host.calls[alter][3:5] == ["postgres", "psql"]
    assert calls[alter + 1][:2] == ["compose", "up"] and "--no-recreate" in host.calls[alter + 1]
    assert not [c for c in calls[alter:] if c[:2] == ["compose", "config"]]
