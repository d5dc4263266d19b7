"""Two example applications deployed from their own inventories: what their users would check.

Tests run in file order: the update, the rollback and the host restart come last.
"""

import json
import time
import uuid

from conftest import (MEDIA, MEDIA_URL, SHOP, SHOP_URL, ServiceEvents, containers, get_json, http, recap, restart_host,
                      run_playbook, wait_healthy)
from testlib import Load

SHOP_SERVICES = ["api", "nginx", "postgres", "redis"]
MEDIA_SERVICES = ["api", "nginx", "redis", "web", "worker", "ws"]
UPLOAD = {}  # what test_worker_processes_an_upload stored, checked again after update, rollback, restart


def test_both_stacks_are_healthy(shop, media):
    wait_healthy(shop, "shop", SHOP_SERVICES)
    wait_healthy(media, "media", MEDIA_SERVICES)


def test_stand_ins_lack_curl_wget_setpriv_and_ps(shop, media):
    # The scenario proves the role needs none of them in an image.
    for host, name in ((shop, "shop-postgres-1"), (shop, "shop-redis-1"), (media, "media-nginx-1"), (media, "media-redis-1")):
        for tool in ("curl", "wget", "setpriv", "ps"):
            assert host.run("docker exec %s sh -c %s", name, "command -v " + tool).rc != 0, (name, tool)
    for name in ("media-api-1", "media-worker-1", "media-ws-1", "media-web-1"):
        assert media.run("docker exec %s sh -c 'command -v curl || command -v wget'", name).rc != 0, name


# -- fastapi-shop: an API whose frontend is baked into the edge image ---------------------------

def test_shop_frontend_comes_from_the_edge_image(shop):
    status, _, body = http(shop, "GET", "/")
    assert status == 200 and "<html" in body.lower()
    assert not [n for n in containers(shop, "shop") if "frontend" in n or "web" in n]


def test_shop_items_through_nginx(shop):
    name = "item-" + uuid.uuid4().hex[:8]
    status, _, body = http(shop, "POST", "/api/items", {"name": name}, headers=["Origin: http://127.0.0.1"])
    assert status == 201, body
    status, items = get_json(shop, "/api/items")
    assert status == 200 and name in json.dumps(items)


def test_shop_sees_the_public_host_scheme_and_client(shop):
    status, seen = get_json(shop, "/api/whoami", headers=["Host: shop.example.com:8443"])
    assert status == 200, seen
    assert seen["host"] == "shop.example.com:8443"  # with its port, as CSRF checks compare it
    assert seen["x_forwarded_proto"] == "http" and seen["x_forwarded_for"]
    # A request from another origin is refused by the app's own check.
    status, _, _ = http(shop, "POST", "/api/items", {"name": "x"}, headers=["Origin: http://evil.example"])
    assert status == 403


def test_shop_api_runs_as_its_own_user_and_owns_its_secret_files(shop):
    rows = [line.split() for line in shop.check_output("docker top shop-api-1 -eo pid,uid,comm").splitlines()[1:]]
    assert rows and {uid for _, uid, _ in rows} == {"1000"}, rows
    for name in ("database_url", "redis_url", "secret_key"):
        f = shop.file("/opt/shop/secrets/api/" + name)
        assert f.uid == 1000 and f.mode == 0o400, name


def test_shop_postgres_uses_the_18_layout(shop):
    mounts = json.loads(shop.check_output("docker inspect -f '{{json .Mounts}}' shop-postgres-1"))
    assert "/var/lib/postgresql" in [m["Destination"] for m in mounts if m["Type"] == "volume"]
    env = json.loads(shop.check_output("docker inspect -f '{{json .Config.Env}}' shop-postgres-1"))
    assert not [e for e in env if e.startswith("PGDATA=/var/lib/postgresql/data")]


# -- node-media: web, api, WebSocket, worker, uploads on a volume --------------------------------

def test_media_routes_reach_each_service(media):
    assert http(media, "GET", "/")[0] == 200
    assert get_json(media, "/api/health")[1]["status"] == "ok"
    head = media.run("curl -sS -m 3 -o /dev/null -D - -H 'Connection: Upgrade' -H 'Upgrade: websocket' "
                     "-H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "
                     "http://127.0.0.1/ws/").stdout
    assert " 101 " in head.splitlines()[0], head


def test_worker_processes_an_upload(media):
    content = "upload " + uuid.uuid4().hex
    status, _, body = http(media, "POST", "/api/uploads", content,
                           headers=["Content-Type: text/plain", "X-Filename: note.txt"])
    assert status == 201, body
    upload = json.loads(body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = get_json(media, "/api/uploads/%s/status" % upload["id"])[1]
        if state["status"] in ("done", "failed"):
            break
        time.sleep(1)
    assert state["status"] == "done", state
    UPLOAD.update(id=upload["id"], content=content)


def uploaded_file_is_there(media):
    status, _, body = http(media, "GET", "/api/uploads/" + UPLOAD["id"])
    return status == 200 and body == UPLOAD["content"]


# -- secrets ------------------------------------------------------------------------------------

def app_pids(host, names):
    """PIDs (as the host sees them) of the processes of the given containers."""
    pids = set()
    for name in names:
        pids.update(host.check_output("docker top %s -eo pid", name).split()[1:])
    return pids


def test_no_secret_outside_the_processes_that_use_it(hosts, secrets):
    users = {SHOP: ["shop-api-1"], MEDIA: ["media-api-1", "media-ws-1", "media-worker-1"]}
    for name, host in hosts.items():
        project = "/opt/shop" if name == SHOP else "/opt/media"
        places = {
            "compose.yaml": host.file(project + "/compose.yaml").content_string,
            ".env": host.file(project + "/.env").content_string,
            "docker inspect": host.check_output("docker inspect $(docker ps -aq)"),
            "ps": host.check_output("ps -eo args"),
            "journal": host.check_output("journalctl --no-pager -q -o cat | tail -n 20000"),
        }
        for place, text in places.items():
            for value in secrets:
                assert value not in text, (name, place)
        inside = app_pids(host, users[name])
        for pid in host.check_output("ls /proc | grep -E '^[0-9]+$'").split():
            if pid in inside:
                continue
            environ = host.run("cat /proc/%s/environ", pid).stdout
            for value in secrets:
                assert value not in environ, (name, pid, host.run("cat /proc/%s/cmdline", pid).stdout)


def test_verbose_rerun_changes_nothing_and_leaks_no_secret(secrets):
    result = run_playbook("playbooks/deploy.yml", "-vvv")
    assert result.returncode == 0, result.output[-3000:]
    for host in (SHOP, MEDIA):
        assert recap(result.output, host)["changed"] == 0, host
    for value in secrets:
        assert value not in result.output


def test_bad_model_stops_before_any_change(media):
    before = media.file("/opt/media/compose.yaml").sha256sum
    bad = {"api": {"image": "Selfhost/API:v1", "port": 0, "routes": ["/", "api/"], "replicas": -1},
           "worker": {"image": "selfhost-registry:5000/selfhost/node-media-worker:v1", "depends_on": ["postgres"],
                      "limits": {"memory": "0", "cpus": "0"}, "volumes": [{"name": "uploads", "path": "data"}]}}
    result = run_playbook("playbooks/deploy.yml", "--limit", MEDIA, "-e", json.dumps({"app_services": bad}))
    assert result.returncode != 0
    for field in ("app_services.api.image", "app_services.api.port", "app_services.api.replicas",
                  "app_services.api.routes[1].path", "app_services.worker.depends_on[0]",
                  "app_services.worker.limits.memory", "app_services.worker.limits.cpus",
                  "app_services.worker.volumes[0].path"):
        assert field in result.output, (field, result.output[-3000:])
    assert recap(result.output, MEDIA)["changed"] == 0
    assert media.file("/opt/media/compose.yaml").sha256sum == before


# -- update, rollback, restart: the last good release keeps serving, uploads survive -----------

def test_update_under_load_fails_no_request_and_replaces_the_worker_stop_first(media, shop):
    with ServiceEvents(MEDIA, "media", "worker") as worker, Load(MEDIA_URL + "/api/health") as media_load, \
            Load(SHOP_URL + "/api/items") as shop_load:
        # Two applications on hosts of their own, as their own inventories would update them: one
        # batch (at once), not one after the other.
        result = run_playbook("playbooks/update.yml", "-e", "app_version=v2", "-e", "app_update_batch_size=2")
        media_figures, shop_figures = media_load.stop(), shop_load.stop()
    assert result.returncode == 0, result.output[-3000:]
    assert media_figures["requests"] > 100 and media_figures["failed"] == 0, media_figures
    # The shop's edge image carries its frontend, so v2 replaces Nginx itself, which holds the
    # published port: that one restart may fail the requests of at most 3 seconds (README).
    assert shop_figures["requests"] > 100 and shop_figures["failed"] <= 3 * shop_figures["rate"], shop_figures
    assert get_json(media, "/api/health")[1]["version"] == "v2"
    assert "v2" in json.dumps(get_json(shop, "/api/health")[1])
    # Stop-first: the old worker died before the new one started; never two at once.
    events = worker.events
    dies = [t for t, action, _ in events if action == "die"]
    starts = [t for t, action, _ in events if action == "start"]
    assert dies and starts and max(dies) < min(starts), events
    workers = media.check_output("docker ps --filter label=com.docker.compose.project=media "
                                 "--filter label=com.docker.compose.service=worker --format '{{.Image}}'")
    assert workers.split() == ["selfhost-registry:5000/selfhost/node-media-worker:v2"], workers
    assert uploaded_file_is_there(media)


def test_rollback_returns_to_v1_and_keeps_the_uploads(media):
    with Load(MEDIA_URL + "/api/health") as load:
        result = run_playbook("playbooks/rollback.yml", "--limit", MEDIA)
        figures = load.stop()
    assert result.returncode == 0, result.output[-3000:]
    assert figures["failed"] == 0, figures
    assert get_json(media, "/api/health")[1]["version"] == "v1"
    assert uploaded_file_is_there(media)


def test_uploads_survive_a_host_restart(media):
    restart_host(MEDIA)
    wait_healthy(media, "media", MEDIA_SERVICES)
    assert uploaded_file_is_there(media)
