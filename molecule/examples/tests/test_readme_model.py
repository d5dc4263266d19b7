"""The collection README's example model, deployed as its reader would: the fenced yaml block of
README.md that starts with `# inventories/prod/group_vars/all/main.yml` ("Using the collection on
your own hosts"), read from the README at test time so that the docs cannot drift from what
works. Only its images' registry prefix is replaced (by the stand-ins of
tests/harness/readme-shop), the vault values it names are supplied, and the settings every
example inventory of this scenario carries for the test harness are added. It runs as a second
project (shop, Nginx on 8081) on node-media's test host, after node-media's own tests (file
order), and leaves node-media's containers alone.
"""

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import MEDIA, ServiceEvents, http, recap, run_playbook
from testlib import PROJECT

README = PROJECT / "README.md"
MARKER = "# inventories/prod/group_vars/all/main.yml"
PREFIX = "registry.example.com/shop/"
LOCAL = "selfhost-registry:5000/selfhost/readme-shop-"  # tests/harness/example-images.sh pushes them
PORT = 8081
UPDATE_VERSION = "1.4.3"
# What every example inventory of this scenario sets for the harness (no Docker repository, no
# public images; the local registry's stand-ins of postgres, redis and nginx), and Nginx's port
# beside node-media's 80.
HARNESS = {
    "docker_install_source": "distro",
    "docker_daemon_options": {"insecure-registries": ["selfhost-registry:5000"]},
    "app_http_port": PORT,
    "app_postgres_image": "selfhost-registry:5000/selfhost/postgres:18",
    "app_redis_image": "selfhost-registry:5000/selfhost/redis:8-minimal",
    "app_nginx_image": "selfhost-registry:5000/selfhost/nginx:1.26-slim",
}
WS_CLIENT = PROJECT / "examples" / "node-media" / "ws-client.py"
SEEN = {}  # what a test found, for a later one: the upload


def readme_block():
    """The README's example model, as text."""
    blocks = re.findall(r"^```yaml\n(.*?)^```$", README.read_text(), re.M | re.S)
    found = [block for block in blocks if block.startswith(MARKER + "\n")]
    assert len(found) == 1, "README.md has %d yaml blocks starting with %r" % (len(found), MARKER)
    return found[0]


@pytest.fixture(scope="module")
def readme():
    """An inventory of the media host with the README's model: (inventory path, model, vault values)."""
    text = readme_block()
    model = yaml.safe_load(text)
    images = [svc["image"] for svc in model["app_services"].values()]
    assert images and all(image.startswith(PREFIX) for image in images), images
    assert text.count(PREFIX) == len(images)
    assert not set(HARNESS) & set(model), "the README sets what the harness would: %s" % (set(HARNESS) & set(model))
    # Only what the README leaves to the vault, each a fresh value of 48 hex digits.
    vault = {name: secrets.token_hex(24) for name in sorted(set(re.findall(r"\bvault_[a-z0-9_]+", text)))}
    assert vault, "the README model names no vault values"
    main = text.replace(PREFIX, LOCAL)

    host = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())["all"]["hosts"][MEDIA]
    tmp = Path(tempfile.mkdtemp(prefix="selfhost-readme-model-"))
    (tmp / "group_vars" / "all").mkdir(parents=True)
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {MEDIA: host}}}))
    (tmp / "group_vars" / "all" / "main.yml").write_text(main)
    (tmp / "group_vars" / "all" / "harness.yml").write_text(yaml.safe_dump(HARNESS))
    (tmp / "group_vars" / "all" / "vault.yml").write_text(yaml.safe_dump(vault))
    yield str(tmp / "hosts.yml"), yaml.safe_load(main), vault
    shutil.rmtree(tmp, ignore_errors=True)


def deploy(inventory, playbook="playbooks/deploy.yml", *args):
    return run_playbook(playbook, "--limit", MEDIA, *args, inventory=inventory)


def project(host, name="shop"):
    """`docker inspect` of every container of a Compose project."""
    ids = host.check_output("docker ps -aq --filter label=com.docker.compose.project=%s", name).split()
    return json.loads(host.check_output("docker inspect " + " ".join(ids))) if ids else []


def by_service(containers):
    out = {}
    for c in containers:
        out.setdefault(c["Config"]["Labels"]["com.docker.compose.service"], []).append(c)
    return out


def media_state(host):
    """What the shop's runs must not change on the host: node-media's containers and daemon.json."""
    return ({c["Name"]: (c["Id"], c["State"]["StartedAt"]) for c in project(host, "media")},
            host.file("/etc/docker/daemon.json").sha256sum)


def get(host, path):
    status, _, body = http(host, "GET", path, port=PORT)
    return status, body


def get_json(host, path):
    status, body = get(host, path)
    return status, json.loads(body or "null")


def wait_for(what, probe, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            assert value, "%s not within %ds" % (what, timeout)
            return value
        time.sleep(1)


def migrate_runs(host):
    status, body = get_json(host, "/api/migrations")
    assert status == 200, body
    return body


def no_secret_anywhere(host, vault, output=""):
    places = {"compose.yaml": host.file("/opt/shop/compose.yaml").content_string,
              ".env": host.file("/opt/shop/.env").content_string,
              "docker inspect": host.check_output("docker inspect $(docker ps -aq)"),
              "playbook output": output}
    for place, text in places.items():
        for name, value in vault.items():
            assert value not in text, (name, place)


def test_first_deploy_of_the_readme_model_succeeds(media, readme):
    inventory, _model, vault = readme
    before = media_state(media)
    result = deploy(inventory)
    assert result.returncode == 0, result.output[-4000:]
    no_secret_anywhere(media, vault, result.output)
    assert media_state(media) == before, "the shop's deploy touched node-media or the Docker daemon"


def images(model, version):
    """service -> the image reference of each of its containers, at a version."""
    return dict((name, [svc["image"].replace("{{ app_version }}", version)] * int(svc.get("replicas", 1)))
                for name, svc in model["app_services"].items())


def test_every_container_of_the_model_runs(media, readme):
    _inventory, model, _vault = readme
    services = by_service(project(media))
    assert sorted(services) == sorted(list(model["app_services"]) + ["nginx", "postgres", "redis"]), sorted(services)
    found = dict((name, [c["Config"]["Image"] for c in services[name]]) for name in model["app_services"])
    assert found == images(model, model["app_version"]), found  # api twice (replicas: 2)
    for name, containers in services.items():
        for c in containers:
            assert c["State"]["Status"] == "running" and c["RestartCount"] == 0, (c["Name"], c["State"])
            if name != "worker":
                assert (c["State"].get("Health") or {}).get("Status") == "healthy", (c["Name"], c["State"].get("Health"))
    # The worker has no port and no route: no healthcheck at all (not even an image's), and it runs.
    for c in services["worker"]:
        assert c["Config"]["Healthcheck"]["Test"] == ["NONE"] and not c["State"].get("Health"), c["Config"]["Healthcheck"]
        assert c["Config"]["Cmd"] == model["app_services"]["worker"]["command"], c["Config"]["Cmd"]


def test_the_migration_ran_once(media):
    assert len(media.file("/opt/shop/.migrated").content_string.splitlines()) == 1
    runs = migrate_runs(media)
    assert [m["migration_name"] for m in runs["applied"]] == ["20240601000000_init"], runs
    assert [(r["version"], r["applied"]) for r in runs["runs"]] == [("1.4.2", 1)], runs
    # The table it created serves the API (PostgreSQL through DATABASE_URL, from the vault).
    name = "item-" + uuid.uuid4().hex[:8]
    status, _, body = http(media, "POST", "/api/items", {"name": name}, port=PORT)
    assert status == 201, body
    status, items = get_json(media, "/api/items")
    assert status == 200 and name in [i["name"] for i in items["items"]], items


def test_the_edge_routes_to_web_api_and_websocket(media, readme):
    _inventory, model, _vault = readme
    status, page = get(media, "/")
    assert status == 200 and "web <span id=\"version\">1.4.2</span>" in page, page
    hosts = set()
    for _ in range(30):
        status, health = get_json(media, "/api/health")
        assert status == 200 and health["status"] == "ok" and health["version"] == "1.4.2", health
        hosts.add(health["host"])
        if len(hosts) == model["app_services"]["api"]["replicas"]:
            break
    assert len(hosts) == model["app_services"]["api"]["replicas"], hosts  # both replicas serve
    head = media.run("curl -sS -m 3 -o /dev/null -D - -H 'Connection: Upgrade' -H 'Upgrade: websocket' "
                     "-H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "
                     "http://127.0.0.1:%d/ws/" % PORT).stdout
    assert " 101 " in head.splitlines()[0], head
    # The greeting and an echo, by node-media's client run inside the host (its script on stdin).
    token = "echo-" + uuid.uuid4().hex
    out = subprocess.run(["docker", "exec", "-i", MEDIA, "python3", "-", "ws://127.0.0.1:%d/ws/" % PORT,
                          "--send", token, "--expect", "hello 1.4.2 ", "--expect", token, "--timeout", "10"],
                         input=WS_CLIENT.read_text(), capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_upload_of_the_api_is_seen_by_the_worker(media):
    content = "upload " + uuid.uuid4().hex
    status, _, body = http(media, "POST", "/api/uploads", content, port=PORT)
    assert status == 201, body
    upload = json.loads(body)

    def seen():
        status, state = get_json(media, "/api/uploads/" + upload["id"])
        return status == 200 and state["seen"]
    receipt = wait_for("the worker's receipt", seen, 30)
    assert receipt["sha256"] == hashlib.sha256(content.encode()).hexdigest() and receipt["worker_version"] == "1.4.2"
    status, beat = get_json(media, "/api/worker")
    assert status == 200 and beat["redis"] == "PONG" and beat["version"] == "1.4.2", beat  # REDIS_URL works
    SEEN["upload"] = upload["id"]


def test_secrets_reach_the_api_only_through_its_environment(media, readme):
    _inventory, _model, vault = readme
    status, session = get_json(media, "/api/session")
    expected = hmac.new(vault["vault_session_key"].encode(), b"readme-shop", hashlib.sha256).hexdigest()
    assert status == 200 and session["hmac"] == expected, session
    no_secret_anywhere(media, vault)


def test_second_run_changes_nothing_and_migrates_nothing(media, readme):
    inventory, _model, vault = readme
    result = deploy(inventory)
    assert result.returncode == 0, result.output[-4000:]
    assert recap(result.output, MEDIA)["changed"] == 0, result.output[-4000:]
    no_secret_anywhere(media, vault, result.output)
    assert len(media.file("/opt/shop/.migrated").content_string.splitlines()) == 1
    assert len(migrate_runs(media)["runs"]) == 1


def test_update_switches_both_images_and_replaces_the_worker_stop_first(media, readme):
    inventory, model, vault = readme
    before = media_state(media)
    with ServiceEvents(MEDIA, "shop", "worker") as worker:
        result = deploy(inventory, "playbooks/update.yml", "-e", "app_version=" + UPDATE_VERSION)
    assert result.returncode == 0, result.output[-4000:]
    no_secret_anywhere(media, vault, result.output)
    assert media_state(media) == before, "the shop's update touched node-media or the Docker daemon"

    services = by_service(project(media))
    found = dict((name, [c["Config"]["Image"] for c in services[name]]) for name in model["app_services"])
    assert found == images(model, UPDATE_VERSION), found
    assert all(c["State"]["Status"] == "running" for cs in services.values() for c in cs), services
    assert get_json(media, "/api/health")[1]["version"] == UPDATE_VERSION
    assert "web <span id=\"version\">%s</span>" % UPDATE_VERSION in get(media, "/")[1]
    # Stop-first: the old worker died before the new one started; never two at once. It runs after.
    dies = [t for t, action, _ in worker.events if action == "die"]
    starts = [t for t, action, _ in worker.events if action == "start"]
    assert dies and starts and max(dies) < min(starts), worker.events

    def new_heartbeat():
        beat = get_json(media, "/api/worker")[1]
        return beat if beat.get("version") == UPDATE_VERSION and beat.get("redis") == "PONG" else None
    wait_for("a heartbeat of the new worker with Redis", new_heartbeat, 30)
    # "once per release (a change of image or command runs them again)": the image changed, so
    # the migration ran once more, with the new image, and applied nothing new.
    assert len(media.file("/opt/shop/.migrated").content_string.splitlines()) == 2
    runs = migrate_runs(media)
    assert [(r["version"], r["applied"]) for r in runs["runs"]] == [("1.4.2", 1), (UPDATE_VERSION, 0)], runs
    assert len(runs["applied"]) == 1, runs
    # The upload is still on the volume, with the old worker's receipt.
    assert "upload" in SEEN, "test_an_upload_of_the_api_is_seen_by_the_worker did not pass"
    status, state = get_json(media, "/api/uploads/" + SEEN["upload"])
    assert status == 200 and state["seen"]["worker_version"] == "1.4.2", state
