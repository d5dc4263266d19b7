"""The Compose project of a service model on one host (module_utils.compose_render).

Models come from service_model.normalize(), as the role builds them; the context is built the
way roles/app/vars/main.yml builds `app_compose_context` (what runs on this host, the image
references per service, how each image starts as module image_config reports it). The
assertions are about what a user would check in the rendered compose.yaml.
"""

import copy
import json
import re

import pytest
import yaml

from ansible_collections.selfhost.stack.plugins.filter.compose_project import FilterModule, compose_plan, compose_project
from ansible_collections.selfhost.stack.plugins.module_utils import compose_render as cr
from ansible_collections.selfhost.stack.plugins.module_utils import image_config
from ansible_collections.selfhost.stack.plugins.module_utils import service_model as sm
from ansible_collections.selfhost.stack.plugins.module_utils.service_model import normalize

API = "registry.example.com/shop/api:1.4.2"
WEB = "registry.example.com/shop/web:1.4.2"
TOOLS = "registry.example.com/shop/tools:1.4.2"
WORKER = "registry.example.com/shop/worker:1.4.2"
PG16, PG18, REDIS, NGINX = "postgres:16", "postgres:18", "redis:7", "nginx:1.27"
BUILTIN_IMAGE_VARS = {"NGINX_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE"}

SECRETS = {
    "db_password": "pg-Pa55word-0001",
    "redis_password": "rd-Pa55word-0002",
    "database_url": "postgresql://shop:pg-Pa55word-0001@postgres:5432/shop",
    "redis_url": "redis://:rd-Pa55word-0002@redis:6379/0",
    "secret_key": "flask-S3cret-Key-77",
    "jwt_secret_key": "jwt-Signing-Key-42",
    "api_token": "api-Token-Value-9",
}

LIMITS = {  # app_limits of defaults/main.yml
    "nginx": {"memory": "128M", "cpus": "0.50", "pids": 256},
    "postgres": {"memory": "512M", "cpus": "1.0", "pids": 256},
    "redis": {"memory": "128M", "cpus": "0.50", "pids": 64},
}
DEFAULTS = {  # app_service_defaults of defaults/main.yml
    "limits": {"memory": "512M", "cpus": "1.0", "pids": 512},
    "healthcheck": {"interval": "5s", "timeout": "3s", "retries": 12, "start_period": "30s"},
    "tmpfs": ["/tmp"],
    "read_only": True,
    "replicas": 1,
    "stop_grace_period": "30s",
}


def inspected(entrypoint=None, cmd=None, user="", uid=0, gid=0, volumes=(), env=()):
    """An entry of image_config's `images`: `docker image inspect` summarised, plus the resolved uid/gid."""
    info = image_config.summarize({"Id": "sha256:" + "ab" * 32, "Config": {
        "Entrypoint": entrypoint, "Cmd": cmd, "User": user, "Env": list(env),
        "Volumes": dict((v, {}) for v in volumes) or None, "WorkingDir": "/app"}})
    info.update(uid=uid, gid=gid)
    return info


IMAGES = {
    API: inspected(["docker-entrypoint.sh"], ["gunicorn", "app:app"], "app", 1000, 1000),
    WEB: inspected(["docker-entrypoint.sh"], ["node", "server.js"], "node", 1001, 1001),
    TOOLS: inspected(["/usr/bin/tini", "--"], ["sh"]),
    # No entrypoint, a shell-form CMD that uses a variable of the container's own environment.
    WORKER: inspected(None, ["/bin/sh", "-c", "exec worker --port $PORT"], "2000", 2000, 2000),
    PG16: inspected(["docker-entrypoint.sh"], ["postgres"], volumes=["/var/lib/postgresql/data"],
                    env=["PGDATA=/var/lib/postgresql/data"]),
    PG18: inspected(["docker-entrypoint.sh"], ["postgres"], volumes=["/var/lib/postgresql"],
                    env=["PGDATA=/var/lib/postgresql/18/docker"]),
    REDIS: inspected(["docker-entrypoint.sh"], ["redis-server"], volumes=["/data"]),
    NGINX: inspected(["/docker-entrypoint.sh"], ["nginx", "-g", "daemon off;"]),
}

# The README's example: a Flask API and a Next.js frontend (app_version 1.4.2, Redis off).
README_EXAMPLE = {
    "api": {
        "image": API,
        "command": ["gunicorn", "-b", "0.0.0.0:5000", "app:create_app()"],
        "port": 5000,
        "routes": ["/api/"],
        "healthcheck": {"http": "/api/health"},
        "env": {"CORS_ORIGINS": "https://shop.example.com"},
        "secrets": [{"name": "database_url", "env": "DATABASE_URL"}, {"name": "secret_key", "env": "SECRET_KEY"},
                    {"name": "jwt_secret_key", "env": "JWT_SECRET_KEY"}],
        "depends_on": ["postgres"],
        "replicas": 2,
        "migrations": [{"command": ["flask", "db", "upgrade"]}],
    },
    "web": {
        "image": WEB,
        "port": 3000,
        "routes": ["/"],
        "healthcheck": {"command": ["node", "-e", "require('http').get('http://127.0.0.1:3000/', r => process.exit("
                                    "r.statusCode < 400 ? 0 : 1)).on('error', () => process.exit(1))"]},
    },
}


def model_of(services, data_services=("postgres", "redis")):
    return normalize(copy.deepcopy(services), defaults=DEFAULTS, secrets=SECRETS, data_services=list(data_services),
                     project_dir="/opt/shop")


def host_services(services, host=None, groups=None, nginx=True, postgres=True, redis=True):
    """app_host_services: a single host runs everything; in a fleet `app` hosts the application, `db` the data."""
    app_side = list(services) + (["nginx"] if nginx else [])
    data_side = (["postgres"] if postgres else []) + (["redis"] if redis else [])
    if not groups:
        return app_side + data_side
    return (app_side if host in groups.get("app", []) else []) + (data_side if host in groups.get("db", []) else [])


def context(model, here, images=None, pg_image=PG16, publish="", tls=False, start_interval="1s", redis_uid=999):
    """app_compose_context of roles/app/vars/main.yml."""
    images = IMAGES if images is None else images
    refs = dict((s, model[s]["image"]) for s in here if s in model)
    refs.update((name, ref) for name, ref in (("nginx", NGINX), ("postgres", pg_image), ("redis", REDIS)) if name in here)
    static = cr.static_entries(model, here)
    pg_volumes = images.get(pg_image, {}).get("volumes", [])
    return {
        "name": "shop",
        "services_here": here,
        "restart": "unless-stopped",
        "log_max_size": "10m",
        "log_max_file": 3,
        "start_interval": start_interval,
        "builtin_healthcheck": {"interval": "5s", "timeout": "3s", "retries": 12, "start_period": "30s"},
        "images": images,
        "refs": refs,
        "nginx": {"bind": "0.0.0.0", "http_port": 80, "https_port": 443, "tls": tls, "limits": LIMITS["nginx"],
                  "static_from_image": any(e["from_image"] for e in static),
                  "static_volumes": list(dict.fromkeys(e["volume"] for e in static if e["volume"]))},
        "postgres": {"db": "shop", "user": "shop", "port": 5432, "publish": publish,
                     "layout18": "/var/lib/postgresql" in pg_volumes and "/var/lib/postgresql/data" not in pg_volumes,
                     "limits": LIMITS["postgres"]},
        "redis": {"uid": redis_uid, "port": 6379, "publish": publish, "limits": LIMITS["redis"]},
    }


def render(services, here=None, data_services=("postgres", "redis"), **ctx):
    """(document, model) as the role renders them on one host; ``here`` defaults to a single host."""
    model = model_of(services, data_services)
    here = host_services(services) if here is None else here
    return cr.compose_project(model, context(model, here, **ctx)), model


def example(**ctx):
    """The README example on a single host (app_redis_enabled: false)."""
    model = model_of(README_EXAMPLE, ["postgres"])
    here = host_services(README_EXAMPLE, redis=False)
    return cr.compose_project(model, context(model, here, **ctx)), model


def unescape(value):
    """What the container gets after Compose's interpolation of a value without variables."""
    if isinstance(value, list):
        return [unescape(v) for v in value]
    return value.replace("$$", "$")


def interpolations(value, where="doc"):
    """(where, variable) of every $VAR / ${VAR} Compose would substitute in the document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from interpolations(item, "%s.%s" % (where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from interpolations(item, "%s[%d]" % (where, i))
    elif isinstance(value, str):
        i = 0
        while i < len(value):
            if value.startswith("$$", i):
                i += 2
                continue
            if value[i] == "$":
                m = re.match(r"\{([^}:?-]*)|([A-Za-z_][A-Za-z0-9_]*)", value[i + 1:])
                yield where, (m.group(1) or m.group(2)) if m else value[i:]
            i += 1


def serialized(doc):
    """The document as the role writes it (to_nice_yaml) and as JSON."""
    return yaml.safe_dump(doc, sort_keys=False) + json.dumps(doc)


# -- the README example on one host ----------------------------------------------------------


def test_readme_example_renders_the_services_of_a_single_host():
    doc, _model = example()
    assert doc["name"] == "shop"
    assert sorted(doc["services"]) == ["api", "api-migrate-1", "nginx", "postgres", "web"]
    # The document survives the role's YAML serialisation unchanged.
    assert yaml.safe_load(yaml.safe_dump(doc, sort_keys=False)) == doc


def test_every_service_is_hardened_with_limits():
    for doc in (example()[0], render(WORKLOAD)[0], render(WORKLOAD, here=["postgres", "redis"], publish="10.0.0.5")[0]):
        for name, spec in doc["services"].items():
            assert spec["read_only"] is True, name
            assert spec["cap_drop"] == ["ALL"], name
            assert "no-new-privileges:true" in spec["security_opt"], name
            limits = spec["deploy"]["resources"]["limits"]
            assert set(limits) == {"memory", "cpus", "pids"}, name
            assert "./selfhost:/selfhost:ro" in spec["volumes"], name
            assert spec["logging"] == {"driver": "local", "options": {"max-size": "10m", "max-file": "3"}}, name


def test_limits_are_the_services_own_or_the_collections():
    doc, _ = example()
    services = doc["services"]
    assert services["api"]["deploy"]["resources"]["limits"] == {"memory": "512M", "cpus": "1.0", "pids": 512}
    for name in ("nginx", "postgres"):
        assert services[name]["deploy"]["resources"]["limits"] == LIMITS[name]
    doc, _ = render({"api": dict(README_EXAMPLE["api"], limits={"memory": "256M", "cpus": 0.5, "pids": 128})})
    assert doc["services"]["api"]["deploy"]["resources"]["limits"] == {"memory": "256M", "cpus": "0.5", "pids": 128}
    # The migration one-off runs under the same limits.
    assert doc["services"]["api-migrate-1"]["deploy"]["resources"]["limits"]["memory"] == "256M"
    # pids: null means no pids limit; memory and CPUs stay limited.
    doc, _ = render({"api": dict(README_EXAMPLE["api"], limits={"pids": None})})
    assert doc["services"]["api"]["deploy"]["resources"]["limits"] == {"memory": "512M", "cpus": "1.0"}


def test_read_only_and_capabilities_follow_the_service():
    doc, _ = render({"legacy": {"image": WORKER, "read_only": False, "cap_add": ["NET_ADMIN"]}}, here=["legacy"])
    spec = doc["services"]["legacy"]
    assert spec["read_only"] is False
    assert spec["cap_add"] == ["NET_ADMIN"] and spec["cap_drop"] == ["ALL"]
    assert "cap_add" not in example()[0]["services"]["web"]


def test_images_are_variables_of_the_env_file():
    doc, model = example()
    here = host_services(README_EXAMPLE, redis=False)
    env = cr.image_env(model, here)
    assert env == {"API_IMAGE": API, "API_MIGRATE_1_IMAGE": API, "WEB_IMAGE": WEB}
    for name, spec in doc["services"].items():
        var = re.fullmatch(r"\$\{([A-Z0-9_]+)\}", spec["image"]).group(1)
        assert var in env or var in BUILTIN_IMAGE_VARS, name
    assert doc["services"]["api"]["image"] == "${API_IMAGE}"
    assert doc["services"]["api-migrate-1"]["image"] == "${API_MIGRATE_1_IMAGE}"


def test_secrets_are_compose_secrets_from_files():
    doc, _ = example()
    api = doc["services"]["api"]
    targets = {}
    for mount in api["secrets"]:
        targets[mount["target"]] = doc["secrets"][mount["source"]]["file"]
    assert targets == {"database_url": "./secrets/api/database_url", "secret_key": "./secrets/api/secret_key",
                       "jwt_secret_key": "./secrets/api/jwt_secret_key"}
    pg = doc["services"]["postgres"]
    assert [doc["secrets"][m["source"]]["file"] for m in pg["secrets"]] == ["./secrets/postgres/db_password"]
    assert [m["target"] for m in pg["secrets"]] == ["db_password"]
    # Every secret of the document is mounted by some service and is a file under ./secrets/<service>/.
    used = {m["source"] for spec in doc["services"].values() for m in spec.get("secrets", [])}
    assert used == set(doc["secrets"])
    assert all(re.fullmatch(r"\./secrets/[a-z][a-z0-9_-]*/[a-z][a-z0-9_.]*", s["file"]) for s in doc["secrets"].values())


def test_no_secret_value_appears_anywhere_in_the_document():
    text = serialized(example()[0]) + serialized(render(WORKLOAD)[0])
    for name, value in SECRETS.items():
        assert value not in text, name
    for part in ("pg-Pa55word-0001", "rd-Pa55word-0002"):
        assert part not in text


def test_the_secret_files_the_role_writes_are_the_ones_the_document_mounts():
    for services, here in ((README_EXAMPLE, host_services(README_EXAMPLE, redis=False)),
                           (WORKLOAD, host_services(WORKLOAD))):
        model = model_of(services)
        doc = cr.compose_project(model, context(model, here))
        files = {"./secrets/%s/%s" % (f["service"], f["name"]) for f in cr.secret_files(model, here, IMAGES)}
        assert files == {s["file"] for s in doc["secrets"].values()}


def test_env_secrets_wrap_the_image_entrypoint_and_keep_the_services_command():
    doc, _ = example()
    api = doc["services"]["api"]
    assert api["entrypoint"] == ["/bin/sh", "/selfhost/with-secrets", "docker-entrypoint.sh"]
    assert api["command"] == ["gunicorn", "-b", "0.0.0.0:5000", "app:create_app()"]


def test_selfhost_secret_env_lists_names_only():
    doc, _ = example()
    env = doc["services"]["api"]["environment"]
    pairs = dict(p.split("=", 1) for p in env["SELFHOST_SECRET_ENV"].split())
    assert pairs == {"DATABASE_URL": "database_url", "SECRET_KEY": "secret_key", "JWT_SECRET_KEY": "jwt_secret_key"}
    # The variables themselves are not in the document: the wrapper sets them at start.
    assert not {"DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY"} & set(env)
    assert env["CORS_ORIGINS"] == "https://shop.example.com"


def test_env_secrets_without_a_command_run_the_images_cmd():
    services = {"worker": {"image": WORKER, "secrets": [{"name": "api_token", "env": "API_TOKEN"}]}}
    doc, _ = render(services, here=["worker"])
    worker = doc["services"]["worker"]
    # The image has no entrypoint: the wrapper execs the image's CMD.
    assert worker["entrypoint"] == ["/bin/sh", "/selfhost/with-secrets"]
    # Setting an entrypoint drops the image's CMD, so the CMD is given again; the container's
    # shell (not Compose) expands $PORT.
    assert unescape(worker["command"]) == IMAGES[WORKER]["cmd"]
    assert list(interpolations(worker["command"])) == []


def test_env_secrets_with_the_services_own_entrypoint():
    services = {"api": {"image": API, "entrypoint": ["/app/start.sh", "--verbose"],
                        "secrets": [{"name": "api_token", "env": "API_TOKEN"}]}}
    doc, _ = render(services, here=["api"])
    api = doc["services"]["api"]
    assert api["entrypoint"] == ["/bin/sh", "/selfhost/with-secrets", "/app/start.sh", "--verbose"]
    assert api["command"] == IMAGES[API]["cmd"]


def test_env_secrets_before_the_image_is_on_the_host():
    """Check mode on a new host: the image is not read yet; the render still succeeds."""
    services = {"api": {"image": API, "secrets": [{"name": "api_token", "env": "API_TOKEN"}]}}
    doc, _ = render(services, here=["api"], images={})
    assert doc["services"]["api"]["entrypoint"][:2] == ["/bin/sh", "/selfhost/with-secrets"]


def test_file_env_secrets_set_a_path_and_keep_the_image_entrypoint():
    services = {"api": {"image": API, "secrets": [{"name": "db_password", "file_env": "DATABASE_PASSWORD_FILE"},
                                                  "api_token"]}}
    doc, _ = render(services, here=["api", "postgres"])
    api = doc["services"]["api"]
    assert api["environment"] == {"DATABASE_PASSWORD_FILE": "/run/secrets/db_password"}
    assert "entrypoint" not in api and "command" not in api  # the image's own
    assert sorted(m["target"] for m in api["secrets"]) == ["api_token", "db_password"]
    assert "SELFHOST_SECRET_ENV" not in serialized(doc)


def test_user_values_keep_their_dollars():
    services = {"shell": {
        "image": WORKER,
        "command": "echo $HOME ${USER}",
        "entrypoint": ["/usr/bin/env", "X=$1"],
        "env": {"PRICE": "costs $5", "TEMPLATE": "${NAME:-x}", "DOUBLE": "$$"},
        "healthcheck": {"command": 'test -n "$HOSTNAME"'},
        "volumes": [{"name": "cache", "path": "/var/cache/$app"}],
        "tmpfs": ["/tmp/$x"],
        "migrations": [{"command": "migrate --to $LATEST"}, {"command": ["migrate", "$NEXT"]}],
    }}
    doc, _ = render(services, here=["shell"])
    shell = doc["services"]["shell"]
    assert unescape(shell["environment"]["PRICE"]) == "costs $5"
    assert unescape(shell["environment"]["TEMPLATE"]) == "${NAME:-x}"
    assert unescape(shell["environment"]["DOUBLE"]) == "$$"
    assert unescape(shell["command"]) == ["/bin/sh", "-c", "echo $HOME ${USER}"]
    assert unescape(shell["entrypoint"]) == ["/usr/bin/env", "X=$1"]
    assert unescape(shell["healthcheck"]["test"]) == ["CMD-SHELL", 'test -n "$HOSTNAME"']
    assert unescape(doc["services"]["shell-migrate-1"]["command"]) == ["/bin/sh", "-c", "migrate --to $LATEST"]
    assert unescape(doc["services"]["shell-migrate-2"]["command"]) == ["migrate", "$NEXT"]
    # Compose substitutes nothing but the image variables.
    assert sorted(set(interpolations(doc))) == [
        ("doc.services.shell-migrate-1.image", "SHELL_MIGRATE_1_IMAGE"),
        ("doc.services.shell-migrate-2.image", "SHELL_MIGRATE_2_IMAGE"),
        ("doc.services.shell.image", "SHELL_IMAGE")]


def test_compose_substitutes_only_image_variables():
    """And each service's secrets hash, in its selfhost.secrets-hash label only."""
    for doc in (example()[0], render(WORKLOAD)[0], render(STATIC)[0]):
        for where, var in interpolations(doc):
            if where.endswith(".labels.selfhost.secrets-hash"):
                service = where.split(".")[2]
                assert var == cr.secrets_hash_var(service.split("-migrate-")[0]), (where, var)
            else:
                assert where.endswith(".image") and (var.endswith("_IMAGE")), (where, var)
                assert not var.endswith("_SECRETS_HASH"), (where, var)


def test_string_command_runs_in_a_shell():
    doc, _ = render({"worker": {"image": WORKER, "command": "python -m worker --queue default"}}, here=["worker"])
    assert doc["services"]["worker"]["command"] == ["/bin/sh", "-c", "python -m worker --queue default"]
    doc, _ = render({"worker": {"image": WORKER, "entrypoint": "exec tini -- worker"}}, here=["worker"])
    assert doc["services"]["worker"]["entrypoint"] == ["/bin/sh", "-c", "exec tini -- worker"]


# -- healthchecks -------------------------------------------------------------------------------


def test_healthcheck_kinds():
    services = {
        "api": {"image": API, "port": 5000, "healthcheck": {"http": "/api/health", "interval": "10s", "retries": 3}},
        "rpc": {"image": API, "port": 6000},  # a port and no healthcheck: a TCP check
        "tcp": {"image": API, "port": 7000, "healthcheck": {"tcp": True}},
        "web": README_EXAMPLE["web"],
        "shell": {"image": API, "healthcheck": {"command": "pgrep -f worker || exit 1"}},
        "cron": {"image": API, "healthcheck": {"none": True}},
        "worker": {"image": API},  # no port: no healthcheck
    }
    doc, _ = render(services, here=list(services))
    checks = dict((name, doc["services"][name]["healthcheck"]) for name in services)
    assert checks["api"]["test"] == ["CMD", "/bin/sh", "/selfhost/probe", "http", "5000", "/api/health"]
    assert (checks["api"]["interval"], checks["api"]["timeout"], checks["api"]["retries"]) == ("10s", "3s", 3)
    assert checks["api"]["start_period"] == "30s" and checks["api"]["start_interval"] == "1s"
    assert checks["rpc"]["test"] == ["CMD", "/bin/sh", "/selfhost/probe", "tcp", "6000"]
    assert checks["tcp"]["test"] == ["CMD", "/bin/sh", "/selfhost/probe", "tcp", "7000"]
    assert checks["web"]["test"] == ["CMD"] + README_EXAMPLE["web"]["healthcheck"]["command"]
    assert checks["shell"]["test"] == ["CMD-SHELL", "pgrep -f worker || exit 1"]
    assert checks["cron"] == {"disable": True}
    assert checks["worker"] == {"disable": True}
    # The probe the checks run is mounted in the container.
    for name in ("api", "rpc", "tcp"):
        assert "./selfhost:/selfhost:ro" in doc["services"][name]["volumes"]


def test_healthcheck_start_interval_is_left_out_for_older_engines():
    doc, _ = example(start_interval="")
    assert all("start_interval" not in spec.get("healthcheck", {}) for spec in doc["services"].values())


def test_collections_services_have_healthchecks():
    doc, _ = render(WORKLOAD)
    services = doc["services"]
    assert services["nginx"]["healthcheck"]["test"] == ["CMD", "/bin/sh", "/selfhost/probe", "http", "80", "/healthz"]
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert services["postgres"]["healthcheck"]["start_period"] == "60s"
    # Redis' check needs no password.
    assert "redis-cli ping" in services["redis"]["healthcheck"]["test"][1]
    assert "rd-Pa55word-0002" not in serialized(services["redis"])


# -- dependencies, networks, replicas -----------------------------------------------------------

# An API, a worker without routes and a scheduler without a healthcheck.
WORKLOAD = {
    "api": {"image": API, "port": 5000, "routes": ["/api/"], "healthcheck": {"http": "/api/health"},
            "secrets": [{"name": "database_url", "env": "DATABASE_URL"}, {"name": "redis_url", "env": "REDIS_URL"}],
            "depends_on": ["postgres", "redis"], "replicas": 3,
            "migrations": [{"command": ["flask", "db", "upgrade"]}, {"command": ["seed"], "image": TOOLS}]},
    "worker": {"image": WORKER, "command": ["worker", "--queue", "default"],
               "secrets": [{"name": "redis_url", "file_env": "REDIS_URL_FILE"}],
               "depends_on": ["redis", "api", "cron"], "replicas": 2},
    "cron": {"image": WORKER, "command": "crond -f", "healthcheck": {"none": True}},
}


def test_depends_on_waits_for_healthy_or_started_services():
    doc, _ = render(WORKLOAD)
    services = doc["services"]
    assert services["worker"]["depends_on"] == {
        "redis": {"condition": "service_healthy"}, "api": {"condition": "service_healthy"},
        "cron": {"condition": "service_started"}}
    assert services["api"]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                             "redis": {"condition": "service_healthy"}}
    assert "depends_on" not in services["cron"]
    # The edge never waits for the application: it starts (and answers 503) without it.
    assert "depends_on" not in services["nginx"]


def test_nginx_starts_through_the_pool_resolver_before_its_image_entrypoint():
    doc, _ = render(WORKLOAD)
    nginx = doc["services"]["nginx"]
    assert nginx["entrypoint"] == ["/bin/sh", "/selfhost/nginx-start", "/docker-entrypoint.sh"]
    assert nginx["command"] == ["nginx", "-g", "daemon off;"]


def test_networks_on_a_single_host():
    doc, _ = render(WORKLOAD)
    services = doc["services"]
    assert doc["networks"] == {"frontend": {}, "backend": {"internal": True}}
    assert sorted(services["api"]["networks"]) == ["backend", "frontend"]
    assert sorted(services["worker"]["networks"]) == ["backend", "frontend"]
    assert services["cron"]["networks"] == ["frontend"]  # uses neither PostgreSQL nor Redis
    assert services["postgres"]["networks"] == ["backend"] and services["redis"]["networks"] == ["backend"]
    assert services["nginx"]["networks"] == ["frontend"]
    # Every network a service joins is declared.
    for spec in services.values():
        assert set(spec["networks"]) <= set(doc["networks"])


def test_no_backend_network_without_data_services():
    services = {"web": README_EXAMPLE["web"]}
    doc, _ = render(services, here=host_services(services, postgres=False, redis=False), data_services=[])
    assert doc["networks"] == {"frontend": {}}
    assert doc["services"]["web"]["networks"] == ["frontend"]
    assert "volumes" not in doc and "secrets" not in doc


def test_replicas():
    doc, _ = render(WORKLOAD)
    services = doc["services"]
    assert (services["api"]["deploy"]["replicas"], services["worker"]["deploy"]["replicas"],
            services["cron"]["deploy"]["replicas"]) == (3, 2, 1)


def test_stop_grace_period_of_every_application_service():
    """The container's stop timeout: a `docker stop` without --time waits that long before SIGKILL."""
    services = dict(WORKLOAD, worker=dict(WORKLOAD["worker"], stop_grace_period="2m"))
    doc, _ = render(services)
    grace = {name: spec.get("stop_grace_period") for name, spec in doc["services"].items()}
    assert grace == {"api": "30s", "worker": "2m", "cron": "30s",  # app_service_defaults' 30s, or the service's
                     "api-migrate-1": None, "api-migrate-2": None,  # one-off runs: never stopped by the role
                     "nginx": None, "postgres": None, "redis": None}  # the collection's own: as before
    doc, _ = render(WORKLOAD, here=["cron"])
    assert doc["services"]["cron"]["stop_grace_period"] == "30s"


def test_secrets_hash_labels_roll_only_services_with_secrets():
    """The label names a .env variable the switch writes on the host, where the key is: Compose
    resolves it, so a changed secret changes the configuration of the services that use it."""
    doc, _ = render(WORKLOAD)
    services = doc["services"]
    assert services["api"]["labels"] == {"selfhost.secrets-hash": "${API_SECRETS_HASH}"}
    assert services["worker"]["labels"] == {"selfhost.secrets-hash": "${WORKER_SECRETS_HASH}"}
    assert "labels" not in services["cron"]  # no secrets
    assert services["redis"]["labels"] == {"selfhost.secrets-hash": "${REDIS_SECRETS_HASH}"}
    assert "labels" not in services["postgres"] and "labels" not in services["nginx"]
    # The label is the same whatever the secrets are: compose.yaml holds no trace of them.
    assert "${API_SECRETS_HASH}" in json.dumps(doc) and SECRETS["database_url"] not in json.dumps(doc)


def test_secrets_hash_variables_of_hyphenated_names():
    assert cr.secrets_hash_var("api") == "API_SECRETS_HASH"
    assert cr.secrets_hash_var("media-worker") == "MEDIA_WORKER_SECRETS_HASH"
    services = {"media-worker": {"image": WORKER, "secrets": [{"name": "api_token", "env": "API_TOKEN"}]}}
    doc, _ = render(services, here=["media-worker"])
    assert doc["services"]["media-worker"]["labels"] == {"selfhost.secrets-hash": "${MEDIA_WORKER_SECRETS_HASH}"}


# -- migrations ---------------------------------------------------------------------------------


def test_migrations_are_one_off_services_of_their_own_profile():
    doc, _ = render(WORKLOAD)
    services = doc["services"]
    api = services["api"]
    first, second = services["api-migrate-1"], services["api-migrate-2"]
    for number, spec in ((1, first), (2, second)):
        assert spec["profiles"] == ["migrations"]
        assert spec["image"] == "${API_MIGRATE_%d_IMAGE}" % number
        assert spec["restart"] == "no"
        assert "healthcheck" not in spec and "depends_on" not in spec and "replicas" not in spec["deploy"]
        # With the service's environment, secrets and networks.
        assert spec["environment"] == api["environment"]
        assert spec["secrets"] == api["secrets"]
        assert spec["networks"] == api["networks"]
        assert spec["deploy"]["resources"] == api["deploy"]["resources"]
    assert first["command"] == ["flask", "db", "upgrade"]
    assert second["command"] == ["seed"]
    # Only services that have migrations get them, and nothing else runs in the profile.
    assert [n for n, s in services.items() if "profiles" in s] == ["api-migrate-1", "api-migrate-2"]
    assert "profiles" not in api


def test_migration_runs_the_images_entrypoint_like_compose_run():
    doc, _ = render(WORKLOAD)
    first = doc["services"]["api-migrate-1"]
    assert first["entrypoint"] == ["/bin/sh", "/selfhost/with-secrets"] + IMAGES[API]["entrypoint"]


def test_migration_with_another_image_runs_that_images_entrypoint():
    """A migration image (tools) has an entrypoint of its own; env secrets wrap that one, not the service's."""
    doc, _ = render(WORKLOAD)
    second = doc["services"]["api-migrate-2"]
    assert second["entrypoint"] == ["/bin/sh", "/selfhost/with-secrets"] + IMAGES[TOOLS]["entrypoint"]
    # Without env secrets the migration image's own entrypoint runs (no override).
    services = {"api": dict(WORKLOAD["api"], secrets=[], depends_on=[])}
    doc, _ = render(services, here=["api"])
    assert "entrypoint" not in doc["services"]["api-migrate-2"]


def test_migrations_plan_and_image_env():
    model = model_of(WORKLOAD)
    here = host_services(WORKLOAD)
    assert cr.migrations(model, here) == [
        {"service": "api", "number": 1, "compose_service": "api-migrate-1", "image": API,
         "var": "API_MIGRATE_1_IMAGE", "command": ["flask", "db", "upgrade"]},
        {"service": "api", "number": 2, "compose_service": "api-migrate-2", "image": TOOLS,
         "var": "API_MIGRATE_2_IMAGE", "command": ["seed"]},
    ]
    assert cr.image_env(model, here) == {"API_IMAGE": API, "API_MIGRATE_1_IMAGE": API, "API_MIGRATE_2_IMAGE": TOOLS,
                                         "CRON_IMAGE": WORKER, "WORKER_IMAGE": WORKER}
    # Every image variable of the document is in the env file (or one of the collection's); the
    # secrets hashes are the ones the switch adds to it (api, worker and Redis have secrets).
    doc = cr.compose_project(model, context(model, here))
    used = {var for _where, var in interpolations(doc)}
    assert used == set(cr.image_env(model, here)) | BUILTIN_IMAGE_VARS | {
        "API_SECRETS_HASH", "WORKER_SECRETS_HASH", "REDIS_SECRETS_HASH"}
    # Not on this host: no migrations, no variables.
    assert cr.migrations(model, ["nginx", "postgres"]) == [] and cr.image_env(model, ["postgres"]) == {}


def test_image_variables_of_hyphenated_names():
    services = {"media-worker": {"image": WORKER, "migrations": [{"command": ["migrate"]}]}}
    model = model_of(services)
    assert cr.image_env(model, ["media-worker"]) == {"MEDIA_WORKER_IMAGE": WORKER, "MEDIA_WORKER_MIGRATE_1_IMAGE": WORKER}
    doc = cr.compose_project(model, context(model, ["media-worker"]))
    assert doc["services"]["media-worker"]["image"] == "${MEDIA_WORKER_IMAGE}"
    assert doc["services"]["media-worker-migrate-1"]["image"] == "${MEDIA_WORKER_MIGRATE_1_IMAGE}"


def test_services_whose_names_differ_only_in_hyphen_and_underscore_are_refused():
    # They would share MY_API_IMAGE and the pool my_api_pool.
    with pytest.raises(sm.ModelError) as error:
        sm.normalize({"my-api": {"image": API}, "my_api": {"image": WORKER}})
    assert "app_services.my_api: my-api and my_api differ only in - and _" in str(error.value)


# -- static files -------------------------------------------------------------------------------

STATIC = {
    "api": {"image": API, "port": 5000, "routes": ["/api/"],
            "volumes": [{"name": "uploads", "path": "/data/uploads", "backup": True}],
            "static": [{"path": "/static/", "from_image": "/app/static", "max_age": "7d"},
                       {"path": "/media/", "volume": "uploads"}]},
}


def test_static_entries():
    model = model_of(STATIC)
    assert cr.static_entries(model, host_services(STATIC)) == [
        {"service": "api", "path": "/static/", "from_image": "/app/static", "volume": None, "max_age": "7d"},
        {"service": "api", "path": "/media/", "from_image": None, "volume": "uploads", "max_age": "1h"},
    ]
    assert cr.static_entries(model, ["nginx", "postgres"]) == []


def test_nginx_mounts_static_files_and_volumes_read_only():
    doc, _ = render(STATIC)
    nginx = doc["services"]["nginx"]
    assert "./static:/srv/static:ro" in nginx["volumes"]
    assert "uploads:/srv/volumes/uploads:ro" in nginx["volumes"]
    assert "uploads:/data/uploads" in doc["services"]["api"]["volumes"]
    assert "uploads" in doc["volumes"]
    doc, _ = example()
    assert not [v for v in doc["services"]["nginx"]["volumes"] if "/srv/" in v]


def test_volumes_are_project_volumes_shared_by_name():
    services = {
        "api": {"image": API, "volumes": [{"name": "uploads", "path": "/data/uploads"}]},
        "thumbs": {"image": WORKER, "volumes": [{"name": "uploads", "path": "/in", "read_only": True},
                                                {"name": "cache", "path": "/cache"}]},
    }
    doc, _ = render(services, here=list(services))
    assert doc["volumes"] == {"cache": {}, "uploads": {}}
    assert "uploads:/in:ro" in doc["services"]["thumbs"]["volumes"]
    assert doc["services"]["thumbs"]["tmpfs"] == ["/tmp"]


def test_nginx_ports_and_tls():
    doc, _ = example()
    nginx = doc["services"]["nginx"]
    assert nginx["ports"] == ["0.0.0.0:80:80"]
    assert "NET_BIND_SERVICE" in nginx["cap_add"]
    doc, _ = example(tls=True)
    nginx = doc["services"]["nginx"]
    assert nginx["ports"] == ["0.0.0.0:80:80", "0.0.0.0:443:443"]
    assert "./tls:/etc/nginx/tls:ro" in nginx["volumes"]
    # Nginx is the only published service of a single host.
    assert [n for n, s in doc["services"].items() if s.get("ports")] == ["nginx"]


# -- the collection's PostgreSQL and Redis ------------------------------------------------------


def test_postgres_before_18_keeps_the_cluster_below_its_volume():
    doc, _ = example(pg_image=PG16)
    pg = doc["services"]["postgres"]
    assert "postgres_data:/var/lib/postgresql/data" in pg["volumes"]
    assert pg["environment"]["PGDATA"] == "/var/lib/postgresql/data/pgdata"
    assert pg["environment"]["PGDATA"].startswith("/var/lib/postgresql/data/")
    assert doc["volumes"] == {"postgres_data": {}}


def test_postgres_18_uses_its_own_layout():
    doc, _ = example(pg_image=PG18)
    pg = doc["services"]["postgres"]
    assert "postgres_data:/var/lib/postgresql" in pg["volumes"]
    assert not [v for v in pg["volumes"] if v.startswith("postgres_data:/var/lib/postgresql/")]
    assert "PGDATA" not in pg["environment"]
    # The image's own PGDATA lies in the volume.
    assert IMAGES[PG18]["env"]["PGDATA"].startswith("/var/lib/postgresql/")


def test_postgres_starts_through_the_start_script_with_a_password_file():
    doc, _ = example()
    pg = doc["services"]["postgres"]
    assert pg["entrypoint"] == ["/bin/sh", "/selfhost/postgres-start", "docker-entrypoint.sh"]
    assert pg["command"] == ["postgres"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert (pg["environment"]["POSTGRES_DB"], pg["environment"]["POSTGRES_USER"]) == ("shop", "shop")
    assert "POSTGRES_PASSWORD" not in pg["environment"]
    assert "ports" not in pg
    # Before the image is read (check mode): the official image's entrypoint and command.
    doc, _ = example(images={})
    assert doc["services"]["postgres"]["entrypoint"] == ["/bin/sh", "/selfhost/postgres-start", "docker-entrypoint.sh"]
    assert doc["services"]["postgres"]["command"] == ["postgres"]


def test_redis_runs_as_its_uid_with_the_config_secret():
    doc, model = render(WORKLOAD, redis_uid=1001)
    redis = doc["services"]["redis"]
    assert redis["user"] == "1001"
    assert redis["command"] == ["redis-server", "/run/secrets/redis.conf"]
    [mount] = redis["secrets"]
    assert mount["target"] == "redis.conf"
    assert doc["secrets"][mount["source"]]["file"] == "./secrets/redis/redis.conf"
    assert "redis_data:/data" in redis["volumes"]
    # The config file is owned by that uid, so the server reads it.
    files = cr.secret_files(model, host_services(WORKLOAD), IMAGES, {}, redis_uid=1001)
    assert {"service": "redis", "name": "redis.conf", "owner": "1001:0"} in files


@pytest.mark.parametrize("volume", sm.RESERVED_VOLUMES)
def test_reserved_volume_names_are_refused_by_the_model(volume):
    """Before anything is rendered: the volumes of PostgreSQL and Redis are the collection's."""
    services = {"api": {"image": API, "volumes": [{"name": volume, "path": "/data"}]}}
    with pytest.raises(sm.ModelError) as info:
        model_of(services)
    assert info.value.errors == ["app_services.api.volumes[0].name: %s is a volume of the collection itself "
                                 "(PostgreSQL's or Redis' data); name yours differently" % volume]
    doc, _ = render({"api": {"image": API, "volumes": [{"name": "data", "path": "/data"}]}})
    assert set(sm.RESERVED_VOLUMES) <= set(doc["volumes"])  # the names the model keeps free


# -- a fleet: app hosts and a db host -----------------------------------------------------------

GROUPS = {"app": ["app1", "app2"], "db": ["db1"]}


def test_fleet_app_host_runs_the_application_without_postgres_or_redis():
    here = host_services(WORKLOAD, host="app1", groups=GROUPS)
    assert here == ["api", "worker", "cron", "nginx"]
    doc, model = render(WORKLOAD, here=here)
    services = doc["services"]
    assert sorted(services) == ["api", "api-migrate-1", "api-migrate-2", "cron", "nginx", "worker"]
    # PostgreSQL and Redis are on the db host: nothing waits for them here, no backend network.
    assert "depends_on" not in services["api"]
    assert services["worker"]["depends_on"] == {"api": {"condition": "service_healthy"},
                                                "cron": {"condition": "service_started"}}
    assert doc["networks"] == {"frontend": {}}
    assert all(spec["networks"] == ["frontend"] for spec in services.values())
    assert "volumes" not in doc
    assert not [s for s in doc["secrets"] if s.startswith(("postgres", "redis"))]
    assert [f["service"] for f in cr.secret_files(model, here, IMAGES)] == ["api", "api", "worker"]


def test_fleet_db_host_runs_only_postgres_and_redis_published():
    here = host_services(WORKLOAD, host="db1", groups=GROUPS)
    assert here == ["postgres", "redis"]
    doc, model = render(WORKLOAD, here=here, publish="10.0.0.5")
    services = doc["services"]
    assert sorted(services) == ["postgres", "redis"]
    assert services["postgres"]["ports"] == ["10.0.0.5:5432:5432"]
    assert services["redis"]["ports"] == ["10.0.0.5:6379:6379"]
    # Published ports need a network that is not internal; no frontend without other services.
    assert doc["networks"] == {"backend": {"internal": False}}
    assert sorted(s["file"] for s in doc["secrets"].values()) == ["./secrets/postgres/db_password",
                                                                   "./secrets/redis/redis.conf"]
    assert doc["volumes"] == {"postgres_data": {}, "redis_data": {}}
    assert cr.secret_files(model, here, IMAGES) == [
        {"service": "postgres", "name": "db_password", "owner": "0:0"},
        {"service": "redis", "name": "redis.conf", "owner": "999:0"}]
    assert cr.pools(model, here) == [] and cr.migrations(model, here) == [] and cr.static_entries(model, here) == []


def test_fleet_host_in_no_group_runs_nothing():
    assert host_services(WORKLOAD, host="other", groups=GROUPS) == []
    doc, _ = render(WORKLOAD, here=[])
    assert doc["services"] == {} and doc["networks"] == {}


# -- the plan: secret files, their owners, pools ------------------------------------------------


def test_secret_files_are_owned_by_the_user_the_service_starts_as():
    model = model_of(README_EXAMPLE, ["postgres"])
    here = host_services(README_EXAMPLE, redis=False)
    assert cr.secret_files(model, here, IMAGES, {"api": API, "web": WEB}) == [
        {"service": "api", "name": "database_url", "owner": "1000:1000"},
        {"service": "api", "name": "secret_key", "owner": "1000:1000"},
        {"service": "api", "name": "jwt_secret_key", "owner": "1000:1000"},
        {"service": "postgres", "name": "db_password", "owner": "0:0"},
    ]
    # The images are not read yet (check mode): the owner is not known.
    assert {f["owner"] for f in cr.secret_files(model, here, {}, {"api": API}) if f["service"] == "api"} == {None}


def test_image_users_name_the_user_whose_uid_secret_files_get():
    services = {
        "api": {"image": API, "user": "1000:1000"},
        "worker": {"image": WORKER, "user": "worker", "secrets_owner": "2001"},
        "web": {"image": WEB},
    }
    model = model_of(services)
    # Numeric users need no lookup; a name is resolved from the image's own /etc/passwd.
    assert cr.image_users(model, list(services) + ["nginx", "postgres"]) == {}
    named = model_of({"worker": {"image": WORKER, "user": "worker"}})
    assert cr.image_users(named, ["worker"]) == {WORKER: "worker"}
    assert cr.image_users(model, ["web", "nginx"]) == {}


def test_services_sharing_an_image_with_different_users_each_own_their_secret_files():
    services = {
        "api": {"image": API, "secrets": ["api_token"]},  # the image's USER, app (1000)
        "worker": {"image": API, "user": "2000", "secrets": ["api_token"]},
    }
    model = model_of(services)
    files = cr.secret_files(model, list(services), IMAGES, {"api": API, "worker": API})
    owners = dict((f["service"], f["owner"]) for f in files)
    assert owners == {"api": "1000:1000", "worker": "2000:2000"}


def test_pools_of_the_routed_services_here():
    services = {"media-api": {"image": API, "port": "5000", "routes": ["/api/"]},
                "web": README_EXAMPLE["web"], "worker": {"image": WORKER}}
    model = model_of(services)
    assert cr.pools(model, list(services) + ["nginx", "postgres"]) == [
        {"service": "media-api", "pool": "media_api_pool", "port": 5000},
        {"service": "web", "pool": "web_pool", "port": 3000}]
    assert cr.pools(model, ["worker", "nginx"]) == []


def test_compose_plan_filter():
    assert set(FilterModule().filters()) == {"compose_project", "compose_plan"}
    model = model_of(WORKLOAD)
    here = host_services(WORKLOAD)
    plan = compose_plan(model, here, images=IMAGES, refs={"api": API}, redis_uid="1001")
    assert set(plan) == {"pools", "secret_files", "image_users", "static", "migrations", "image_env"}
    assert plan["pools"] == cr.pools(model, here)
    assert plan["secret_files"] == cr.secret_files(model, here, IMAGES, {"api": API}, 1001)
    assert plan["migrations"] == cr.migrations(model, here) and plan["image_env"] == cr.image_env(model, here)
