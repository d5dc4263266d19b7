"""The app role's service model (roles/app/README.md, "The service model"): validation and normalisation."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.selfhost.stack.plugins.module_utils import service_model as sm
from ansible_collections.selfhost.stack.plugins.module_utils.service_model import ModelError, normalize

ROOT = Path(__file__).resolve().parents[4]
DROP = object()  # a fragment value that removes the key from the base spec
SECRETS = {
    "db_password": "pg-Pa55word-0001",
    "redis_password": "",
    "database_url": "postgresql://demo:pg-Pa55word-0001@postgres:5432/demo",
    "redis_url": "redis://redis:6379/0",
    "secret_key": "flask-S3cret-Key-77",
    "jwt_key": "jwt-Signing-Key-42",
    "token": "api-Token-Value-9",
    "empty": "",
    "blank": "   ",
}


def model_example():
    """The app_services example of the app role README's section "The service model", as YAML gives it."""
    text = (ROOT / "roles/app/README.md").read_text().split("## The service model", 1)[1]
    return yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])["app_services"]


def spec(**fragment):
    """A valid routed service with ``fragment`` merged over it."""
    base = {"image": "registry.example.com/shop/api:1.4.2", "port": 5000, "routes": ["/api/"],
            "volumes": [{"name": "data", "path": "/data"}]}
    base.update(fragment)
    return {k: v for k, v in base.items() if v is not DROP}


def errors_of(services, **kwargs):
    kwargs.setdefault("secrets", SECRETS)
    with pytest.raises(ModelError) as info:
        normalize(services, **kwargs)
    return info.value.errors


# Each case: a fragment of service "api" and the field its error names.
BAD = [
    ({"image": DROP}, "image"),
    ({"image": ""}, "image"),
    ({"image": "Shop/API:1"}, "image"),
    ({"image": "nginx:1.27 "}, "image"),
    ({"image": "nginx@sha256:abc"}, "image"),
    ({"image": "nginx:-bad"}, "image"),
    ({"image": "registry.example.com:port/app:1"}, "image"),
    ({"image": 42}, "image"),
    ({"command": []}, "command"),
    ({"command": "   "}, "command"),
    ({"command": ["run", None]}, "command"),
    ({"entrypoint": {"sh": "-c"}}, "entrypoint"),
    ({"user": "root user"}, "user"),
    ({"user": True}, "user"),
    ({"secrets_owner": "1000:1000:1000"}, "secrets_owner"),
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"port": True}, "port"),
    ({"port": "80a"}, "port"),
    ({"port": 80.5}, "port"),
    ({"port": DROP}, "port"),
    ({"port": DROP, "routes": DROP, "healthcheck": {"http": "/health"}}, "port"),
    ({"routes": "/api/"}, "routes"),
    ({"routes": ["api/"]}, "routes[0].path"),
    ({"routes": ["/", "/a b"]}, "routes[1].path"),
    ({"routes": ["/{x}"]}, "routes[0].path"),
    ({"routes": ["/a;b"]}, "routes[0].path"),
    ({"routes": [{"path": "/", "websocket": "yes"}]}, "routes[0].websocket"),
    ({"routes": [{"websocket": True}]}, "routes[0].path"),
    ({"routes": [{"path": "/", "ws": True}]}, "routes[0].ws"),
    ({"routes": ["/", "/"]}, "routes[1].path"),
    ({"routes": [42]}, "routes[0]"),
    ({"healthcheck": {"http": "/health", "tcp": True}}, "healthcheck"),
    ({"healthcheck": {"interval": "5s"}}, "healthcheck"),
    ({"healthcheck": {}}, "healthcheck"),
    ({"healthcheck": "http"}, "healthcheck"),
    ({"healthcheck": {"http": "health"}}, "healthcheck.http"),
    ({"healthcheck": {"http": "/health'; rm -rf /"}}, "healthcheck.http"),
    ({"healthcheck": {"tcp": True, "interval": "5"}}, "healthcheck.interval"),
    ({"healthcheck": {"tcp": True, "timeout": "1 s"}}, "healthcheck.timeout"),
    ({"healthcheck": {"tcp": True, "start_period": "1d"}}, "healthcheck.start_period"),
    ({"healthcheck": {"tcp": True, "retries": 0}}, "healthcheck.retries"),
    ({"healthcheck": {"tcp": False}}, "healthcheck.tcp"),
    ({"healthcheck": {"none": "yes"}, "rollout": "stop-first"}, "healthcheck.none"),
    ({"healthcheck": {"command": []}}, "healthcheck.command"),
    ({"healthcheck": {"tcp": True, "intervall": "5s"}}, "healthcheck.intervall"),
    ({"env": ["A=1"]}, "env"),
    ({"env": {"1BAD": "x"}}, "env.1BAD"),
    ({"env": {"BAD-NAME": "x"}}, "env.BAD-NAME"),
    ({"env": {"SELFHOST_ROLE": "x"}}, "env.SELFHOST_ROLE"),
    ({"env": {"A": [1]}}, "env.A"),
    ({"env": {"A": None}}, "env.A"),
    ({"env": {"TOKEN": "x"}, "secrets": [{"name": "token", "env": "TOKEN"}]}, "env.TOKEN"),
    ({"env": {"TOKEN_FILE": "x"}, "secrets": [{"name": "token", "file_env": "TOKEN_FILE"}]}, "env.TOKEN_FILE"),
    ({"secrets": "token"}, "secrets"),
    ({"secrets": [{"name": "nope"}]}, "secrets[0].name"),
    ({"secrets": [{"name": "Bad-Name"}]}, "secrets[0].name"),
    ({"secrets": [{"name": "empty"}]}, "secrets[0].name"),
    ({"secrets": [{"name": "blank"}]}, "secrets[0].name"),
    ({"secrets": [{"env": "TOKEN"}]}, "secrets[0].name"),
    ({"secrets": [{"name": "token", "env": "A", "file_env": "B"}]}, "secrets[0]"),
    ({"secrets": [{"name": "token", "env": "1A"}]}, "secrets[0].env"),
    ({"secrets": [{"name": "token", "file_env": "SELFHOST_TOKEN"}]}, "secrets[0].file_env"),
    ({"secrets": [{"name": "token", "env": "X"}, {"name": "jwt_key", "file_env": "X"}]}, "secrets[1].file_env"),
    ({"secrets": ["token", "token"]}, "secrets[1].name"),
    ({"secrets": [{"name": "token", "value": "x"}]}, "secrets[0].value"),
    ({"volumes": {"name": "data"}}, "volumes"),
    ({"volumes": [{"name": "Data", "path": "/d"}]}, "volumes[0].name"),
    ({"volumes": [{"path": "/d"}]}, "volumes[0].name"),
    ({"volumes": [{"name": "data", "path": "d"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "/d"}, {"name": "data", "path": "/e"}]}, "volumes[1].name"),
    ({"volumes": [{"name": "a", "path": "/d"}, {"name": "b", "path": "/d"}]}, "volumes[1].path"),
    ({"volumes": [{"name": "data", "path": "/d", "backup": "yes"}]}, "volumes[0].backup"),
    ({"volumes": [{"name": "data", "path": "/d", "read_only": 1}]}, "volumes[0].read_only"),
    ({"volumes": [{"name": "data", "path": "/d", "mode": "ro"}]}, "volumes[0].mode"),
    ({"tmpfs": "/tmp"}, "tmpfs"),
    ({"tmpfs": ["tmp"]}, "tmpfs[0]"),
    ({"tmpfs": ["/data"]}, "tmpfs[0]"),
    ({"read_only": "no"}, "read_only"),
    ({"cap_add": ["CAP_NET_ADMIN"]}, "cap_add[0]"),
    ({"cap_add": ["net admin"]}, "cap_add[0]"),
    ({"cap_add": "NET_ADMIN"}, "cap_add"),
    ({"replicas": 0}, "replicas"),
    ({"replicas": "two"}, "replicas"),
    ({"replicas": False}, "replicas"),
    ({"limits": "256M"}, "limits"),
    ({"limits": {"memory": "0"}}, "limits.memory"),
    ({"limits": {"memory": "1T"}}, "limits.memory"),
    ({"limits": {"cpus": 0}}, "limits.cpus"),
    ({"limits": {"cpus": "300"}}, "limits.cpus"),
    ({"limits": {"cpus": "nan"}}, "limits.cpus"),
    ({"limits": {"pids": 0}}, "limits.pids"),
    ({"limits": {"swap": "1g"}}, "limits.swap"),
    ({"depends_on": ["api"]}, "depends_on[0]"),
    ({"depends_on": ["nginx"]}, "depends_on[0]"),
    ({"depends_on": ["mysql"]}, "depends_on[0]"),
    ({"depends_on": "postgres"}, "depends_on"),
    ({"depends_on": ["postgres", "postgres"]}, "depends_on[1]"),
    ({"rollout": "blue-green"}, "rollout"),
    ({"rollout": "zero-downtime", "routes": DROP, "port": DROP}, "rollout"),
    ({"healthcheck": {"none": True}}, "rollout"),
    ({"static": {"path": "/s/"}}, "static"),
    ({"static": [{"path": "/s/"}]}, "static[0]"),
    ({"static": [{"path": "/s/", "from_image": "/a", "volume": "data"}]}, "static[0]"),
    ({"static": [{"from_image": "/a"}]}, "static[0].path"),
    ({"static": [{"path": "s/", "from_image": "/a"}]}, "static[0].path"),
    ({"static": [{"path": "/s/", "from_image": "app/static"}]}, "static[0].from_image"),
    ({"static": [{"path": "/s/", "volume": "other"}]}, "static[0].volume"),
    ({"static": [{"path": "/s/", "from_image": "/a", "max_age": "7 days"}]}, "static[0].max_age"),
    ({"static": [{"path": "/api/", "from_image": "/a"}]}, "static[0].path"),
    ({"static": [{"path": "/s/", "from_image": "/a"}, {"path": "/s/", "volume": "data"}]}, "static[1].path"),
    ({"static": [{"path": "/s/", "from_image": "/a", "expires": "1h"}]}, "static[0].expires"),
    ({"migrations": "flask db upgrade"}, "migrations"),
    ({"migrations": [{"command": []}]}, "migrations[0].command"),
    ({"migrations": [{"image": "tools:1"}]}, "migrations[0].command"),
    ({"migrations": [{"command": "migrate", "image": "Tools"}]}, "migrations[0].image"),
    ({"migrations": [{"command": "migrate", "user": "root"}]}, "migrations[0].user"),
    ({"imgae": "nginx:1.27"}, "imgae"),
    # Names and paths the collection keeps for itself.
    ({"volumes": [{"name": "postgres_data", "path": "/d"}]}, "volumes[0].name"),
    ({"volumes": [{"name": "redis_data", "path": "/d"}]}, "volumes[0].name"),
    ({"volumes": [{"name": "data", "path": "/"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "/run"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "/run/secrets"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "/run/secrets/"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "/run/secrets/app"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "//run/./secrets"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "/srv/../run"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "/selfhost"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "data", "path": "/selfhost/probe"}]}, "volumes[0].path"),
    ({"volumes": [{"name": "a", "path": "/d"}, {"name": "b", "path": "/d/"}]}, "volumes[1].path"),
    ({"tmpfs": ["/"]}, "tmpfs[0]"),
    ({"tmpfs": ["/tmp", "/run"]}, "tmpfs[1]"),
    ({"tmpfs": ["/run/secrets"]}, "tmpfs[0]"),
    ({"tmpfs": ["/selfhost/"]}, "tmpfs[0]"),
    ({"tmpfs": ["/tmp", "/tmp/"]}, "tmpfs[1]"),
    ({"tmpfs": ["/data/"]}, "tmpfs[0]"),
    ({"routes": ["/api/../"]}, "routes[0].path"),
    ({"routes": ["/api//v1/"]}, "routes[0].path"),
    ({"static": [{"path": "/../../../../etc/", "from_image": "/a"}]}, "static[0].path"),
    ({"static": [{"path": "/s/./", "volume": "data"}]}, "static[0].path"),
    ({"static": [{"path": "/s/", "from_image": "/"}]}, "static[0].from_image"),
    ({"static": [{"path": "/s/", "from_image": "/app/.."}]}, "static[0].from_image"),
    ({"stop_grace_period": 30}, "stop_grace_period"),
    ({"stop_grace_period": "30"}, "stop_grace_period"),
    ({"stop_grace_period": "1 m"}, "stop_grace_period"),
    ({"stop_grace_period": "1d"}, "stop_grace_period"),
    ({"stop_grace_period": True}, "stop_grace_period"),
]


@pytest.mark.parametrize("fragment, field", BAD, ids=["%s-%d" % (f, i) for i, (_, f) in enumerate(BAD)])
def test_bad_value_names_service_and_field(fragment, field):
    errors = errors_of({"api": spec(**fragment)})
    prefix = "app_services.api.%s: " % field
    assert any(e.startswith(prefix) for e in errors), errors


def test_there_are_enough_distinct_bad_values():
    assert len(BAD) >= 35
    assert len({json.dumps(f, sort_keys=True, default=str) for f, _ in BAD}) == len(BAD)


def test_the_messages_of_the_contract():
    assert errors_of({"api": spec(port=0)}) == ["app_services.api.port: must be an integer from 1 to 65535, got 0"]
    web = {"image": "shop/web:1", "port": 8080, "routes": ["/", "/api/"]}
    assert errors_of({"api": spec(routes=["/api/"]), "web": web}) == [
        "app_services.web.routes[1].path: /api/ is also a route of service api"]


def test_every_error_is_reported_at_once():
    errors = errors_of({"api": spec(port=0, replicas=0, image="Bad"), "web": {"image": "web:1", "routes": ["/api/"]}})
    assert [e.split(":")[0] for e in errors] == [
        "app_services.api.image", "app_services.api.port", "app_services.api.replicas",
        "app_services.web.port", "app_services.web.routes[0].path"]
    assert str(ModelError(errors)) == "; ".join(errors)


def test_offending_values_are_in_the_messages():
    errors = errors_of({"api": spec(replicas="two", limits={"memory": "1T"}, tmpfs=["tmp"])})
    assert "app_services.api.replicas: must be an integer >= 1, got 'two'" in errors
    assert any("'1T'" in e for e in errors) and any("'tmp'" in e for e in errors)


@pytest.mark.parametrize("services, message", [
    ([{"image": "x:1"}], "app_services: must be a dict"),
    ("api", "app_services: must be a dict"),
    (None, "app_services: must be a dict"),
    ({}, "app_services: must define at least one service"),
    ({"api": "nginx:1.27"}, "app_services.api: must be a dict, got 'nginx:1.27'"),
    ({"api": None}, "app_services.api: must be a dict"),
    ({"Api": {"image": "x:1"}}, "app_services.Api: a service name must match"),
    ({"1api": {"image": "x:1"}}, "app_services.1api: a service name must match"),
    ({"a" * 32: {"image": "x:1"}}, "app_services.%s: a service name must match" % ("a" * 32)),
    ({7: {"image": "x:1"}}, "app_services.7: a service name must match"),
    ({"postgres": {"image": "x:1"}}, "app_services.postgres: postgres is a service of the collection"),
    ({"nginx": {"image": "x:1"}}, "app_services.nginx: nginx is a service of the collection"),
    ({"redis": {"image": "x:1"}}, "app_services.redis: redis is a service of the collection"),
])
def test_bad_model(services, message):
    assert any(e.startswith(message) for e in errors_of(services)), errors_of(services)


@pytest.mark.parametrize("name, message", [
    ("backend-migrate-1", "backend-migrate-1 ends in -migrate-<n> (with - or _), the names of the one-off services"),
    ("backend_migrate_12", "backend_migrate_12 ends in -migrate-<n>"),
    ("backend-migrate_1", "backend-migrate_1 ends in -migrate-<n>"),
    ("a-migrate-0", "a-migrate-0 ends in -migrate-<n>"),
    ("a__b", "a service name must not contain '__' (the collection names a service's secrets <service>__<secret>)"),
    ("worker__", "a service name must end in a letter or digit"),
    ("api-", "a service name must end in a letter or digit (Swarm refuses others), got 'api-'"),
    ("api_", "a service name must end in a letter or digit"),
])
def test_names_the_collection_generates_are_refused(name, message):
    errors = errors_of({name: {"image": "x:1"}})
    assert len(errors) == 1 and errors[0].startswith("app_services.%s: %s" % (name, message)), errors


def test_a_service_named_like_a_migration_of_another():
    """Tried as a new user would: beside a backend with migrations, backend-migrate-1 would be
    the Compose service (and the .env variable BACKEND_MIGRATE_1_IMAGE) of its first migration."""
    services = {"backend": {"image": "shop/backend:1", "migrations": [{"command": "migrate"}]},
                "backend-migrate-1": {"image": "shop/tools:1"}}
    assert errors_of(services) == [
        "app_services.backend-migrate-1: backend-migrate-1 ends in -migrate-<n> (with - or _), the names of the "
        "one-off services that run a service's migrations (<service>-migrate-<n>, image variable "
        "<SERVICE>_MIGRATE_<n>_IMAGE); name yours differently"]


def test_names_that_share_an_image_variable_and_a_pool():
    errors = errors_of({"my-api": {"image": "x:1"}, "my_api": {"image": "y:1"}, "a-b_c": {"image": "z:1"},
                        "a_b-c": {"image": "z:1"}})
    assert errors == [
        "app_services.a_b-c: a-b_c and a_b-c differ only in - and _ (they would share the image variable "
        "A_B_C_IMAGE and the Nginx pool a_b_c_pool); name one differently",
        "app_services.my_api: my-api and my_api differ only in - and _ (they would share the image variable "
        "MY_API_IMAGE and the Nginx pool my_api_pool); name one differently"]


@pytest.mark.parametrize("name", ["migrate", "migrate-1", "db-migrate", "backend-migrate", "backend-migrate-x",
                                  "backend-migrate-1a", "backend-1", "a_b-c", "x9", "frontend", "backend",
                                  "postgres-exporter", "nginx2", "a" * 31])
def test_good_service_names(name):
    assert list(normalize({name: {"image": "x:1"}})) == [name]


def test_the_messages_of_the_mount_rules():
    def errors(path, field="volumes"):
        entry = {"volumes": [{"name": "data", "path": path}]} if field == "volumes" else {"tmpfs": [path]}
        return errors_of({"api": spec(**entry)})
    assert errors("/run/secrets") == [
        "app_services.api.volumes[0].path: /run/secrets is where the collection mounts the service's secret files"]
    assert errors("/run") == [
        "app_services.api.volumes[0].path: /run would hide /run/secrets, where the collection mounts the "
        "service's secret files"]
    assert errors("/run/secrets/x", "tmpfs") == [
        "app_services.api.tmpfs[0]: /run/secrets/x is inside /run/secrets, where the collection mounts the "
        "service's secret files"]
    assert errors("/selfhost/") == [
        "app_services.api.volumes[0].path: /selfhost/ is where the collection mounts its helper scripts "
        "(healthcheck probe, secrets wrapper)"]
    assert errors("/", "tmpfs") == ["app_services.api.tmpfs[0]: / is the container's root; mount a directory below it"]
    assert errors_of({"api": spec(tmpfs=["/data/"])}) == [
        "app_services.api.tmpfs[0]: /data/ is also the path of volumes[0].path"]
    assert errors_of({"api": spec(volumes=[{"name": "postgres_data", "path": "/d"}])}) == [
        "app_services.api.volumes[0].name: postgres_data is a volume of the collection itself (PostgreSQL's or "
        "Redis' data); name yours differently"]


@pytest.mark.parametrize("path", ["/run/app", "/runner", "/run/secretsx", "/srv/run/secrets", "/selfhosted",
                                  "/var/selfhost", "/data/", "/tmp"])
def test_good_mount_paths(path):
    out = normalize({"api": spec(volumes=[{"name": "data", "path": path}], tmpfs=[])}, secrets=SECRETS)["api"]
    assert out["volumes"][0]["path"] == path  # as given: the rendered file does not change
    out = normalize({"api": spec(volumes=[], tmpfs=[path])}, secrets=SECRETS)["api"]
    assert out["tmpfs"] == [path]
    assert normalize({"api": spec(tmpfs=[])}, defaults={"tmpfs": [path]}, secrets=SECRETS)


def test_the_messages_of_the_web_path_rules():
    static = [{"path": "/../../../../etc/", "from_image": "/"}]
    assert errors_of({"api": spec(static=static)}) == [
        "app_services.api.static[0].from_image: / is the image's whole filesystem, which Nginx would serve to "
        "anyone; name the directory of the static files",
        "app_services.api.static[0].path: must be a normalised path (no '//', '.' or '..' segments), "
        "got '/../../../../etc/'"]


def test_stop_grace_period():
    def grace(defaults=None, **fragment):
        return normalize({"api": spec(**fragment)}, defaults=defaults)["api"]["stop_grace_period"]
    assert grace() == "30s"
    assert grace(stop_grace_period="1m30s") == "1m30s"
    assert grace(stop_grace_period="500ms") == "500ms"
    assert grace(stop_grace_period="0s") == "0s"
    assert grace(stop_grace_period=None) == "30s"
    assert grace({"stop_grace_period": "2m"}) == "2m"
    assert grace({"stop_grace_period": "2m"}, stop_grace_period="5s") == "5s"
    assert errors_of({"api": spec(stop_grace_period="30")}) == [
        "app_services.api.stop_grace_period: must be a duration such as 500ms, 5s or 1m30s, got '30'"]


def test_the_same_route_twice_in_one_service():
    assert errors_of({"api": spec(routes=["/a/", "/a/"])}) == [
        "app_services.api.routes[1].path: /a/ is also a route of this service, routes[0]"]


def test_a_static_path_may_not_be_another_services_route():
    web = {"image": "web:1", "static": [{"path": "/api/", "from_image": "/srv"}]}
    assert errors_of({"api": spec(), "web": web}) == [
        "app_services.web.static[0].path: /api/ is also a route of service api"]


def test_depends_on_other_services_and_enabled_data_services():
    services = {"api": spec(depends_on=["worker", "postgres"]), "worker": {"image": "w:1", "depends_on": ["redis"]}}
    assert normalize(services, secrets=SECRETS)["api"]["depends_on"] == ["worker", "postgres"]
    errors = errors_of(services, data_services=["postgres"])
    assert errors == ["app_services.worker.depends_on[0]: unknown service 'redis' (known: api, postgres)"]


def test_dependency_cycles_are_reported_once():
    services = {"c": {"image": "c:1", "depends_on": ["a"]}, "a": {"image": "a:1", "depends_on": ["b"]},
                "b": {"image": "b:1", "depends_on": ["c"]}, "d": {"image": "d:1", "depends_on": ["a"]}}
    assert errors_of(services) == ["app_services.a.depends_on: dependency cycle a -> b -> c -> a"]


@pytest.mark.parametrize("path", ["/opt/shop", "/srv/shop", "/home/deploy/shop", "/var/lib/shop", "/data"])
def test_good_project_dirs(path):
    assert sm.validate_project_dir(path) is None
    assert normalize({"api": spec()}, secrets=SECRETS, project_dir=path)


@pytest.mark.parametrize("path, message", [
    ("opt/shop", "must be an absolute path"),
    ("", "must be an absolute path"),
    (None, "must be an absolute path"),
    ("/opt/shop/", "must be a normalised path"),
    ("/opt//shop", "must be a normalised path"),
    ("//opt/shop", "must be a normalised path"),
    ("/opt/./shop", "must be a normalised path"),
    ("/opt/../etc", "must be a normalised path"),
    ("/", "/ is a system directory"),
    ("/opt", "/opt is a system directory"),
    ("/etc", "/etc is a system directory"),
    ("/lib64", "/lib64 is a system directory"),
    ("/var/lib", "/var/lib is a system directory"),
    ("/var/lib/docker", "/var/lib/docker is a system directory"),
    ("/var/lib/docker/volumes/shop", "is inside the system directory /var/lib/docker"),
    ("/proc/1", "is inside the system directory /proc"),
])
def test_bad_project_dirs(path, message):
    errors = errors_of({"api": spec()}, project_dir=path) if path is not None else None
    if path is None:
        assert message in sm.validate_project_dir(path)
        return
    assert len(errors) == 1 and errors[0].startswith("app_project_dir: ") and message in errors[0], errors


def test_the_example_of_the_contract():
    out = normalize(model_example(), secrets=SECRETS, project_dir="/opt/shop")
    assert list(out) == ["api"]
    assert out["api"] == {
        "image": "registry.example.com/shop/api:1.4.2",
        "command": ["gunicorn", "-b", "0.0.0.0:5000", "app:app"],
        "entrypoint": ["/docker-entrypoint.sh"],
        "user": "1000:1000",
        "port": 5000,
        "routes": [{"path": "/api/", "websocket": False}, {"path": "/ws/", "websocket": True}],
        "healthcheck": {"kind": "http", "path": "/api/health", "test": None,
                        "interval": "5s", "timeout": "3s", "retries": 12, "start_period": "30s"},
        "env": {"CORS_ORIGINS": "https://shop.example.com"},
        "secrets": [{"name": "secret_key", "env": "SECRET_KEY", "file_env": None},
                    {"name": "db_password", "env": None, "file_env": "DATABASE_PASSWORD_FILE"},
                    {"name": "jwt_key", "env": None, "file_env": None}],
        "secrets_owner": "1000:1000",
        "volumes": [{"name": "uploads", "path": "/data/uploads", "backup": True, "read_only": False}],
        "tmpfs": ["/tmp"],
        "read_only": True,
        "cap_add": [],
        "replicas": 2,
        "limits": {"memory": "256M", "cpus": "1.0", "pids": 256},
        "depends_on": ["postgres", "redis"],
        "rollout": "zero-downtime",
        "stop_grace_period": "1m",
        "static": [{"path": "/static/", "from_image": "/app/static", "volume": None, "max_age": "7d"},
                   {"path": "/media/", "from_image": None, "volume": "uploads", "max_age": "1h"}],
        "migrations": [{"command": ["flask", "db", "upgrade"], "image": "registry.example.com/shop/api:1.4.2"},
                       {"command": ["flask", "collect-static"], "image": "registry.example.com/shop/tools:1.4.2"}],
    }
    assert json.loads(json.dumps(out)) == out


def test_defaults_of_a_minimal_service():
    assert normalize({"worker": {"image": "shop/worker:1"}}) == {"worker": {
        "image": "shop/worker:1", "command": None, "entrypoint": None, "user": None, "port": None, "routes": [],
        "healthcheck": {"kind": "none", "path": None, "test": None,
                        "interval": "5s", "timeout": "3s", "retries": 12, "start_period": "30s"},
        "env": {}, "secrets": [], "secrets_owner": None, "volumes": [], "tmpfs": ["/tmp"], "read_only": True,
        "cap_add": [], "replicas": 1, "limits": {"memory": "512M", "cpus": "1.0", "pids": 512}, "depends_on": [],
        "rollout": "stop-first", "stop_grace_period": "30s", "static": [], "migrations": []}}


def test_null_fields_are_absent_fields():
    nulls = dict.fromkeys(sm.SERVICE_FIELDS)
    nulls["image"] = "shop/worker:1"
    assert normalize({"worker": nulls}) == normalize({"worker": {"image": "shop/worker:1"}})


def test_a_port_gives_a_tcp_healthcheck_and_routes_zero_downtime():
    out = normalize({"web": {"image": "web:1", "port": 8080, "routes": ["/"]}, "db": {"image": "db:1", "port": 5000}})
    assert [out[n]["healthcheck"]["kind"] for n in ("db", "web")] == ["tcp", "tcp"]
    assert [out[n]["rollout"] for n in ("db", "web")] == ["stop-first", "zero-downtime"]
    assert list(out) == ["db", "web"]


def test_healthcheck_kinds():
    def health(check):
        return normalize({"api": spec(healthcheck=check, rollout="stop-first")})["api"]["healthcheck"]
    assert health({"command": ["pg_isready"]})["test"] == ["pg_isready"]
    assert health({"command": "curl -f localhost"})["test"] == "curl -f localhost"
    assert health({"none": True})["kind"] == "none"
    assert health({"tcp": True, "interval": "1m30s", "timeout": "500ms"})["interval"] == "1m30s"


def test_defaults_merge_under_each_service():
    defaults = {"limits": {"memory": "1G", "pids": None}, "healthcheck": {"interval": "10s", "retries": 3},
                "tmpfs": ["/tmp", "/run/app"], "read_only": False, "replicas": 2, "stop_grace_period": "1m"}
    out = normalize({"a": {"image": "a:1"}, "b": {"image": "b:1", "limits": {"cpus": 0.5}, "tmpfs": [],
                                                    "healthcheck": {"tcp": True, "retries": 5}, "port": 1,
                                                    "read_only": True, "replicas": 1}}, defaults=defaults)
    assert out["a"]["limits"] == {"memory": "1G", "cpus": "1.0", "pids": None}
    assert out["b"]["limits"] == {"memory": "1G", "cpus": "0.5", "pids": None}
    assert (out["a"]["healthcheck"]["interval"], out["a"]["healthcheck"]["retries"]) == ("10s", 3)
    assert (out["b"]["healthcheck"]["interval"], out["b"]["healthcheck"]["retries"]) == ("10s", 5)
    assert out["b"]["healthcheck"]["timeout"] == "3s"
    assert (out["a"]["tmpfs"], out["a"]["read_only"], out["a"]["replicas"]) == (["/tmp", "/run/app"], False, 2)
    assert (out["b"]["tmpfs"], out["b"]["read_only"], out["b"]["replicas"]) == ([], True, 1)
    assert out["a"]["stop_grace_period"] == out["b"]["stop_grace_period"] == "1m"


def test_bad_defaults_are_reported_once_under_app_service_defaults():
    defaults = {"limits": {"memory": "lots"}, "healthcheck": {"retries": 0, "command": "x"}, "tmpfs": ["tmp"],
                "replicas": 0, "read_only": "yes", "restart": "always", "stop_grace_period": "30"}
    assert errors_of({"a": {"image": "a:1"}, "b": {"image": "b:1"}}, defaults=defaults) == [
        "app_service_defaults.healthcheck.command: unknown field (known: interval, retries, start_period, timeout)",
        "app_service_defaults.healthcheck.retries: must be an integer >= 1, got 0",
        "app_service_defaults.limits.memory: must be a size > 0 such as 256M or 1g, got 'lots'",
        "app_service_defaults.read_only: must be true or false, got 'yes'",
        "app_service_defaults.replicas: must be an integer >= 1, got 0",
        "app_service_defaults.restart: unknown field (known: healthcheck, limits, read_only, replicas, "
        "stop_grace_period, tmpfs)",
        "app_service_defaults.stop_grace_period: must be a duration such as 500ms, 5s or 1m30s, got '30'",
        "app_service_defaults.tmpfs[0]: must be an absolute path without whitespace or ':', got 'tmp'",
    ]


def test_default_tmpfs_that_hides_the_collections_files_is_reported_once():
    defaults = {"tmpfs": ["/tmp", "/run", "/tmp/"]}
    assert errors_of({"a": {"image": "a:1"}, "b": {"image": "b:1"}}, defaults=defaults) == [
        "app_service_defaults.tmpfs[1]: /run would hide /run/secrets, where the collection mounts the service's "
        "secret files",
        "app_service_defaults.tmpfs[2]: /tmp/ is also the path of tmpfs[0]",
    ]


def test_strings_from_ansible_are_converted():
    out = normalize({"api": spec(port="5000", replicas="2", user=1000, secrets_owner=1000,
                                 healthcheck={"http": "/health", "retries": "3"},
                                 limits={"memory": 1073741824, "cpus": "0.50", "pids": "100"},
                                 command=["sleep", 10], static=[{"path": "/m/", "volume": "data", "max_age": 0}],
                                 env={"DEBUG": True, "QUIET": False, "WORKERS": 4, "RATIO": 0.5, "NAME": "x"})},
                    secrets=SECRETS)["api"]
    assert (out["port"], out["replicas"], out["healthcheck"]["retries"]) == (5000, 2, 3)
    assert (out["user"], out["secrets_owner"], out["command"]) == ("1000", "1000", ["sleep", "10"])
    assert out["limits"] == {"memory": "1073741824", "cpus": "0.5", "pids": 100}
    assert out["static"][0]["max_age"] == "0"
    assert out["env"] == {"DEBUG": "true", "QUIET": "false", "WORKERS": "4", "RATIO": "0.5", "NAME": "x"}


def test_cpus_are_strings():
    for given, wanted in ((2, "2.0"), (0.25, "0.25"), ("1", "1.0"), ("256", "256.0")):
        assert normalize({"a": {"image": "a:1", "limits": {"cpus": given}}})["a"]["limits"]["cpus"] == wanted


def test_routes_strings_become_dicts_and_volumes_are_shared():
    out = normalize({"a": {"image": "a:1", "port": 1, "routes": ["/", {"path": "/ws/", "websocket": True}],
                           "volumes": [{"name": "shared", "path": "/s", "read_only": True}]},
                     "b": {"image": "b:1", "volumes": [{"name": "shared", "path": "/s", "backup": True}]}})
    assert out["a"]["routes"] == [{"path": "/", "websocket": False}, {"path": "/ws/", "websocket": True}]
    assert out["a"]["volumes"] == [{"name": "shared", "path": "/s", "backup": False, "read_only": True}]
    assert out["b"]["volumes"] == [{"name": "shared", "path": "/s", "backup": True, "read_only": False}]


def test_an_empty_redis_password_may_be_used():
    out = normalize({"w": {"image": "w:1", "secrets": [{"name": "redis_password", "file_env": "REDIS_PASSWORD_FILE"}]}},
                    secrets=SECRETS)
    assert out["w"]["secrets"] == [{"name": "redis_password", "env": None, "file_env": "REDIS_PASSWORD_FILE"}]


def test_stop_first_with_replicas_and_secret_shorthand():
    out = normalize({"w": {"image": "w:1", "replicas": 3, "secrets": ["token"]}}, secrets=SECRETS)["w"]
    assert (out["rollout"], out["replicas"]) == ("stop-first", 3)
    assert out["secrets"] == [{"name": "token", "env": None, "file_env": None}]


def test_the_input_is_not_changed():
    services = model_example()
    before = copy.deepcopy(services)
    normalize(services, secrets=SECRETS, defaults={"limits": {"memory": "1G"}})
    assert services == before


LEAKY = [
    {"secrets": [{"name": "token", "env": "TOKEN", "file_env": "TOKEN_FILE"}]},
    {"secrets": [{"name": "empty"}, {"name": "blank", "env": "BLANK"}]},
    {"secrets": [{"name": "db_password", "env": "PW"}, {"name": "db_password", "file_env": "PW"}]},
    {"secrets": [{"name": "secret_key", "env": "SELFHOST_KEY"}], "env": {"SELFHOST_KEY": 1}},
    {"secrets": [{"name": "jwt_key", "env": "JWT"}], "env": {"JWT": ["x"]}},
    {"secrets": [{"name": "flask-S3cret-Key-77"}]},  # the value typed as a name
    {"secrets": [{"name": "token", "env": "api-Token-Value-9"}]},  # the value typed as a variable
    {"env": {"PASSWORD": {"value": "pg-Pa55word-0001"}}},
    {"secrets": [{"name": "nope"}, {"name": "redis_password"}, {"name": "token", "value": "api-Token-Value-9"}]},
]


@pytest.mark.parametrize("fragment", LEAKY)
def test_no_secret_value_in_any_message(fragment):
    errors = errors_of({"api": spec(**fragment)})
    assert errors
    for value in (v for v in SECRETS.values() if v.strip()):
        assert all(value not in e for e in errors), errors


def test_no_secret_value_in_the_output():
    out = json.dumps(normalize(model_example(), secrets=SECRETS))
    assert all(value not in out for value in SECRETS.values() if value.strip())


@pytest.mark.parametrize("ref", [
    "nginx", "nginx:1.27", "library/nginx:1.27-alpine", "postgres:16", "redis:7.2.4",
    "registry.example.com/shop/api:1.4.2", "registry.example.com:5000/a/b/c:v1", "localhost/app", "localhost:5000/app:1",
    "[::1]:5000/app:1", "a__b/c--d/e.f_g:Tag_1.x", "app@sha256:" + "a" * 64, "app:1@sha256:" + "0" * 64,
    "Registry.Example.com/app:1", "app:" + "t" * 128,
])
def test_good_image_references(ref):
    assert sm.validate_image_reference(ref) is None


@pytest.mark.parametrize("ref", [
    "", None, 5, "Nginx", "shop/API", "nginx:", "nginx:-1", "nginx:1 .27", " nginx", "nginx\n", "a/-b", "a//b", "/a",
    "a/", "app@sha256:" + "A" * 64, "app@sha256:abc", "app@md5:" + "a" * 32, "app:" + "t" * 129, "registry:port/app",
    "a_-b", "example.com/" + "a" * 250,
])
def test_bad_image_references(ref):
    assert sm.validate_image_reference(ref)


def test_system_dirs_are_exported():
    assert {"/", "/etc", "/opt", "/var/lib/docker"} <= set(sm.SYSTEM_DIRS)
