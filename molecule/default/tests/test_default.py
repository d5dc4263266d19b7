"""deploy.yml took a bare Debian 13 host to a healthy stack; checks a user would make.

Tests run in file order: the disruptive ones (down/up, updates) come last. A host restart (during a
switch) is the faults scenario's.
"""

import json
import urllib.error
import urllib.request
import uuid

from conftest import APP_DIR, HOST, api, compose, deploy, recap, wait_healthy
from testlib import Load, run_playbook

SERVICES = ("nginx", "frontend", "backend", "postgres", "redis")


def test_every_container_is_healthy(host):
    state = wait_healthy(host)
    assert sorted(name.split("-")[1] for name in state) == sorted(SERVICES)


def test_only_nginx_publishes_ports(host):
    out = host.check_output("docker ps --filter label=com.docker.compose.project=demo --format '{{.Names}} {{.Ports}}'")
    published = [line.split()[0] for line in out.splitlines() if "->" in line]
    assert published == ["demo-nginx-1"]


def test_backend_network_is_internal(host):
    assert host.check_output("docker network inspect -f '{{.Internal}}' demo_backend") == "true"


def test_containers_are_hardened(host):
    for name in ("demo-backend-1", "demo-frontend-1", "demo-postgres-1", "demo-redis-1", "demo-nginx-1"):
        fmt = "{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.SecurityOpt}} {{json .HostConfig.CapDrop}} {{.HostConfig.Memory}}"
        readonly, secopt, capdrop, memory = host.check_output("docker inspect -f '%s' %s" % (fmt, name)).split()
        assert readonly == "true", name
        assert "no-new-privileges:true" in secopt, name
        assert "ALL" in capdrop, name
        assert int(memory) > 0, name
    # The application processes themselves do not run as root.
    for name, process in (("demo-backend-1", "python3"), ("demo-postgres-1", "postgres"), ("demo-redis-1", "redis-server")):
        users = host.check_output("docker top %s -eo pid,user,comm", name)
        rows = [line.split() for line in users.splitlines()[1:] if process in line]
        assert rows and all(user != "root" for _, user, _ in rows), (name, users)


def test_old_containers_stop_within_their_services_grace_period(host):
    # Compose makes stop_grace_period (app_service_defaults: 30s) each container's StopTimeout,
    # which the switch's `docker stop` of an old container waits before SIGKILL.
    for name in ("demo-backend-1", "demo-frontend-1"):
        assert host.check_output("docker inspect -f '{{.Config.StopTimeout}}' %s", name) == "30", name


def test_add_and_list_an_item_through_nginx(host):
    name = f"item-{uuid.uuid4().hex[:8]}"
    status, created = api(host, "POST", "/api/items", {"name": name})
    assert status == 201 and created["name"] == name
    status, items = api(host, "GET", "/api/items")
    assert status == 200 and name in [i["name"] for i in items["items"]]
    status = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/").stdout
    assert status == "200"


def test_invalid_item_is_rejected(host):
    status, _ = api(host, "POST", "/api/items", {"name": ""})
    assert status == 400


def test_secret_files_are_readable_only_by_the_service_that_uses_them(host):
    secrets = host.file(f"{APP_DIR}/secrets")
    assert secrets.mode == 0o700 and secrets.user == "root"
    owners = {"backend/db_password": "root", "backend/redis_password": "root",
              "postgres/db_password": "root", "redis/redis.conf": "999"}
    for name, owner in owners.items():
        f = host.file(f"{APP_DIR}/secrets/{name}")
        assert f.mode == 0o400, name
        assert str(f.user if owner == "root" else f.uid) == owner, name
        assert host.file(f"{APP_DIR}/secrets/{name.split('/')[0]}").mode == 0o700
    env = host.file(f"{APP_DIR}/.env").content_string
    assert "PASSWORD" not in env.upper()


def test_no_secret_in_the_environment_of_any_process(host, secrets):
    # PostgreSQL's entrypoint exports the password; the role's start script keeps it out of the server.
    for pid in host.check_output("ls /proc | grep -E '^[0-9]+$'").split():
        environ = host.run("cat /proc/%s/environ", pid).stdout
        for value in secrets:
            assert value not in environ, pid


def test_every_container_has_a_pids_limit(host):
    limits = host.check_output("docker inspect -f '{{.Name}} {{.HostConfig.PidsLimit}}' $(docker ps -q)")
    for line in limits.splitlines():
        name, limit = line.split()
        assert limit not in ("<nil>", "0", "-1"), name


def test_nginx_access_log_goes_to_docker_logs(host):
    probe = uuid.uuid4().hex
    host.check_output("curl -s -o /dev/null 'http://127.0.0.1/api/health?probe=%s'", probe)
    assert probe in host.check_output("docker logs --tail 50 demo-nginx-1 2>&1")
    # Nothing of it lands in the tmpfs that counts against the container's memory. (Nginx's
    # notices from reloads do, a few hundred bytes each: under load there are more of them.)
    assert host.run("docker exec demo-nginx-1 grep -rqs %s /var/log/nginx", probe).rc == 1
    size = host.check_output("docker exec demo-nginx-1 sh -c 'du -sk /var/log/nginx | cut -f1'")
    assert int(size) <= 64, size


def test_no_secret_in_docker_inspect(host, secrets):
    inspect = host.check_output("docker inspect $(docker ps -aq)")
    for value in secrets:
        assert value not in inspect


def test_verbose_rerun_changes_nothing_and_leaks_no_secret(secrets):
    result = deploy("-vvv")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert recap(output, HOST)["changed"] == 0
    for value in secrets:
        assert value not in output


def test_check_diff_shows_compose_change_and_changes_nothing(host, secrets):
    before = host.file(f"{APP_DIR}/compose.yaml").sha256sum
    ids_before = host.check_output("docker ps -q --no-trunc | sort")
    result = deploy("--check", "--diff", "-e", "app_backend_replicas=2")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "-      replicas: 1" in output and "+      replicas: 2" in output
    for value in secrets:
        assert value not in output
    assert host.file(f"{APP_DIR}/compose.yaml").sha256sum == before
    assert host.check_output("docker ps -q --no-trunc | sort") == ids_before


def test_bad_input_stops_before_any_change(host):
    before = host.file(f"{APP_DIR}/compose.yaml").sha256sum
    cases = {
        "app_name": ["-e", "app_name=Bad_Name"],
        "app_services.backend.image": ["-e", "app_backend_image="],
        "vault_app_redis_password_missing": ["-e", "app_redis_password={{ vault_app_redis_password_missing }}"],
    }
    for variable, args in cases.items():
        result = deploy(*args)
        output = result.stdout + result.stderr
        assert result.returncode != 0, variable
        assert variable in output, (variable, output[-2000:])
        assert recap(output, HOST)["changed"] == 0, variable
        assert "Deploy Docker and the application stack" not in output, variable
    assert host.file(f"{APP_DIR}/compose.yaml").sha256sum == before


def test_data_survives_compose_down_and_up(host):
    name = f"durable-{uuid.uuid4().hex[:8]}"
    assert api(host, "POST", "/api/items", {"name": name})[0] == 201
    assert compose(host, "down").rc == 0
    assert compose(host, "up", "-d", "--wait").rc == 0
    wait_healthy(host)
    assert name in [i["name"] for i in api(host, "GET", "/api/items")[1]["items"]]


# Rolling updates on a single all-in-one host, under a bounded load from this machine.
LOAD_URL = "http://127.0.0.1:18081/api/items"


def update(*args):
    return run_playbook("playbooks/update.yml", *args)


def served_version(host):
    return api(host, "GET", "/api/version")[1]["version"]


def test_update_under_load_fails_no_request(host):
    before = api(host, "GET", "/api/items")[1]["items"]
    with Load(LOAD_URL) as load:
        result = update("-e", "app_version=v2")
        figures = load.stop()
    assert result.returncode == 0, result.output[-3000:]
    assert figures["requests"] > 100 and figures["failed"] == 0, figures
    assert served_version(host) == "v2"
    after = api(host, "GET", "/api/items")[1]["items"]
    assert {i["id"] for i in before} <= {i["id"] for i in after}
    assert all("created_at" in i for i in after)  # v2's additive migration ran


def test_broken_update_reverts_by_itself_under_load(host):
    with Load(LOAD_URL) as load:
        result = update("-e", "app_version=broken", "-e", "app_deploy_timeout=15")
        figures = load.stop()
    assert result.returncode != 0
    assert f"{HOST}: update to broken failed" in result.output
    assert "did not become healthy" in result.output and "Reverted automatically" in result.output
    assert figures["failed"] == 0, figures
    assert served_version(host) == "v2"
    audit = [json.loads(line) for line in host.file(f"{APP_DIR}/audit.log").content_string.splitlines()]
    start, end = next(e for e in reversed(audit) if e.get("phase") == "start"), audit[-1]
    assert (start["action"], start["phase"], start["version"]) == ("update", "start", "broken"), audit[-3:]
    assert (end["action"], end["phase"], end["version"]) == ("update", "end", "broken"), audit[-3:]
    assert end["result"].startswith("reverted to ") and "did not become healthy" in end["reason"], end
    # The failed attempt is not in the history: the current release is still v2's, its previous v1's.
    current = json.loads(host.file(f"{APP_DIR}/releases/current/release.json").content_string)
    previous = json.loads(host.file(f"{APP_DIR}/releases/{current['previous']}/release.json").content_string)
    assert (current["version"], previous["version"]) == ("v2", "v1")
    assert "broken" not in host.run(f"ls {APP_DIR}/releases").stdout


def test_rollback_returns_to_v1_under_load(host):
    with Load(LOAD_URL) as load:
        result = run_playbook("playbooks/rollback.yml")
        figures = load.stop()
    assert result.returncode == 0, result.output[-3000:]
    assert figures["failed"] == 0, figures
    assert served_version(host) == "v1"
    history = host.file(f"{APP_DIR}/releases/current").linked_to
    assert history.endswith("-v1")


def test_the_images_no_release_uses_are_pruned_and_a_rollback_needs_no_registry(host):
    """The broken update pulled images that never passed: the rollback's prune removed them and
    kept those of every release in the history, so rollbacks to v2 and back to v1 work with the
    registry unreachable."""
    images = set(host.check_output("docker image ls --format '{{.Repository}}:{{.Tag}}'").split())
    kept = set()
    for release in host.check_output(f"ls {APP_DIR}/releases").split():
        if release != "current":
            recorded = json.loads(host.file(f"{APP_DIR}/releases/{release}/release.json").content_string)
            kept |= set(recorded["images"].values())
    # Exactly the images of the releases in the history, of every repository they name.
    repositories = {ref.rsplit(":", 1)[0] for ref in kept}
    assert {i for i in images if i.rsplit(":", 1)[0] in repositories} == kept, (images, kept)
    for service in ("frontend", "backend"):
        assert {f"selfhost-registry:5000/selfhost/demo-{service}:{v}" for v in ("v1", "v2")} <= kept, kept
    audit = [json.loads(line) for line in host.file(f"{APP_DIR}/audit.log").content_string.splitlines()]
    prune = [e for e in audit if e.get("action") == "prune"][-1]
    assert "selfhost-registry:5000/selfhost/demo-backend:broken" in prune["images"], prune
    current = host.file(f"{APP_DIR}/releases/current").linked_to.rsplit("/", 1)[-1]
    assert prune["freed_bytes"] >= 0 and prune["release"] == current, prune
    v2 = [r for r in host.check_output(f"ls {APP_DIR}/releases").split() if r.endswith("-v2")][-1]
    host.run_expect([0], "iptables -I OUTPUT -p tcp --dport 5000 -j REJECT")
    try:
        assert host.run("docker pull selfhost-registry:5000/selfhost/demo-backend:v1").rc != 0
        served = []
        # To v2 and back to v1 (the release the inventory deploys, for the tests after this one).
        for release in (v2, current):
            with Load(LOAD_URL) as load:
                result = run_playbook("playbooks/rollback.yml", "-e", f"app_rollback_release={release}")
                figures = load.stop()
            assert result.returncode == 0, result.output[-3000:]
            assert figures["failed"] == 0, figures
            served.append(served_version(host))
    finally:
        host.run("iptables -D OUTPUT -p tcp --dport 5000 -j REJECT")
    assert served == ["v2", "v1"]


def test_update_bad_input_stops_before_any_change(host):
    before = host.file(f"{APP_DIR}/compose.yaml").sha256sum
    for args, message in (
        (["-e", "app_update_batch_size=0"], "app_update_batch_size must be 1 or more"),
        (["-e", "app_version=v404"], "v404"),
    ):
        result = update(*args)
        assert result.returncode != 0 and message in result.output, (args, result.output[-2000:])
        assert recap(result.output, HOST)["changed"] == 0, args
    assert host.file(f"{APP_DIR}/compose.yaml").sha256sum == before
    assert not host.file(f"{APP_DIR}/.deploy.lock").exists


# Maintenance mode (playbooks/maintenance.yml) and the edge's error page.
EDGE = "http://127.0.0.1:18081"
# The only failed answers under maintenance: Nginx's own 503 (the page), not the application's.
PAGE = {"HTTPError: HTTP Error 503: Service Temporarily Unavailable"}


def maintenance(*args):
    return run_playbook("playbooks/maintenance.yml", *args)


def edge(path="/api/version"):
    """(status, headers, body) of a GET through the edge's published port, from this machine."""
    try:
        with urllib.request.urlopen(EDGE + path, timeout=5) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def names(host, service):
    return host.check_output("docker ps --filter label=com.docker.compose.project=demo --filter "
                             "label=com.docker.compose.service=%s --format '{{.Names}}'", service).split()


def from_backend(host, path="/api/version"):
    """(status, body) of a GET to the edge from inside a backend container (an allow-listed client)."""
    script = ("import sys, urllib.request as u\ntry:\n r = u.urlopen('http://nginx' + sys.argv[1], timeout=5)\n"
              " print(r.status, r.read().decode())\nexcept Exception as e:\n print(getattr(e, 'code', e), '')")
    status, body = host.check_output("docker exec %s python3 -c %s %s", names(host, "backend")[0], script, path).split(" ", 1)
    return status, body


def test_maintenance_mode_under_load_lets_the_allow_list_and_updates_through(host, tmp_path):
    """Ends as the inventory deploys (the plain -vvv re-run, which pytest runs last, changes nothing)."""
    addresses = host.check_output("docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' %s",
                                  names(host, "backend")[0]).split()
    allow = json.dumps({"app_maintenance_allow": addresses})
    error_page = tmp_path / "unavailable.html"
    error_page.write_text("<h1>We will be right back</h1>\n")
    # The site and the operator's error page change, no container.
    assert deploy("-e", allow, "-e", f"app_error_page={error_page}").returncode == 0
    frontends = names(host, "frontend")
    host.run_expect([0], "docker stop " + " ".join(frontends))
    try:
        status, headers, body = edge("/")
        assert (status, headers["Retry-After"], body) == (503, "5", "<h1>We will be right back</h1>\n")
        assert headers["Content-Type"].startswith("text/html")
    finally:
        host.run_expect([0], "docker start " + " ".join(frontends))
    wait_healthy(host)

    bad = maintenance("-e", "maintenance=maybe")
    assert bad.returncode != 0 and 'maintenance must be on or off (-e maintenance=on), got "maybe"' in bad.output
    check = maintenance("-e", "maintenance=on", "--check")
    assert check.returncode == 0 and recap(check.output, HOST)["changed"] >= 1, check.output[-2000:]
    assert not host.file(f"{APP_DIR}/nginx/maintenance.inc").exists and edge()[0] == 200

    with Load(LOAD_URL) as load:
        result = maintenance("-e", "maintenance=on")
        figures = load.stop()
    assert result.returncode == 0, result.output[-3000:]
    # Every answer is the application's or the page, never a connection error, a 502 or the app's 503.
    assert set(figures["failure_reasons"]) <= PAGE and 0 < figures["failed"] < figures["requests"], figures
    status, headers, body = edge("/api/items")
    assert (status, headers["Retry-After"], headers["Cache-Control"]) == (503, "300", "no-store")
    assert "Down for maintenance" in body and "demo" in body
    assert edge("/")[0] == 503 and edge("/healthz")[0] == 200
    assert from_backend(host)[0] == "200"
    assert recap(maintenance("-e", "maintenance=on").output, HOST)["changed"] == 0
    audit = [json.loads(line) for line in host.file(f"{APP_DIR}/audit.log").content_string.splitlines()]
    assert {k: audit[-1][k] for k in ("action", "state")} == {"action": "maintenance", "state": "on"}, audit[-1]

    # An update while it is on passes its gate, which asks through the page with the token of
    # maintenance.inc; the operator's page and Retry-After come with it.
    page = tmp_path / "maintenance.html"
    page.write_text("<h1>Back at noon</h1>\n")
    with Load(LOAD_URL) as load:
        result = update("-e", "app_version=v2", "-e", allow, "-e", f"app_maintenance_page={page}",
                        "-e", "app_maintenance_retry_after=120")
        figures = load.stop()
    assert result.returncode == 0, result.output[-3000:]
    assert set(figures["failure_reasons"]) <= PAGE and figures["failed"] == figures["requests"], figures
    status, headers, body = edge()
    assert (status, headers["Retry-After"], body) == (503, "120", "<h1>Back at noon</h1>\n")
    assert all(host.check_output("docker inspect -f '{{.Config.Image}}' %s", name).endswith(":v2")
               for name in names(host, "backend")), names(host, "backend")

    # A plain deploy (back to v1, the role's page) passes its gate too; then it is turned off.
    assert deploy().returncode == 0
    status, headers, body = edge()
    assert (status, headers["Retry-After"]) == (503, "300") and "Down for maintenance" in body
    with Load(LOAD_URL) as load:
        result = maintenance("-e", "maintenance=off")
        figures = load.stop()
    assert result.returncode == 0, result.output[-3000:]
    assert set(figures["failure_reasons"]) <= PAGE and figures["failed"] < figures["requests"], figures
    assert not host.file(f"{APP_DIR}/nginx/maintenance.inc").exists
    assert edge()[0] == 200 and served_version(host) == "v1"
    bad = deploy("-e", "app_error_page=relative/page.html")
    assert bad.returncode != 0 and "absolute path of an HTML file" in bad.output, bad.output[-2000:]


# Day-2 playbooks: a service's logs, a one-off command.
def one_off_containers(host):
    return host.check_output("docker ps -a --filter label=com.docker.compose.project=demo "
                             "--filter label=com.docker.compose.oneoff=True --format '{{.Names}}'").split()


def test_logs_and_one_off_commands_with_the_services_env_and_secrets(host):
    name = "day2-" + uuid.uuid4().hex[:8]
    assert api(host, "POST", "/api/items", {"name": name})[0] == 201
    logs = run_playbook("playbooks/logs.yml", "-e", "service=nginx", "-e", "since=5m", "-e", "tail=all")
    assert logs.returncode == 0 and "POST /api/items HTTP/1.1" in logs.output, logs.output[-2000:]
    for args, message in ((["-e", "service=nope"], "service must name a service of app_services or nginx"),
                          (["-e", "service=backend", "-e", "since=yesterday"], "since must be a duration")):
        bad = run_playbook("playbooks/logs.yml", *args)
        assert bad.returncode != 0 and message in bad.output, bad.output[-2000:]

    # The backend's own entrypoint, env and secret files: it logs in to PostgreSQL and reads the item.
    query = f"import db; print('found', db.query('SELECT name FROM items WHERE name = %s', ('{name}',)))"
    run = run_playbook("playbooks/run.yml", "-e", "service=backend", "-e", json.dumps({"command": f'python3 -c "{query}"'}))
    assert run.returncode == 0 and f"found [('{name}',)]" in run.output, run.output[-2000:]
    failed = run_playbook("playbooks/run.yml", "-e", "service=backend",
                          "-e", json.dumps({"command": "python3 -c 'import sys; sys.exit(3)'"}))
    assert failed.returncode != 0 and "exited with 3" in failed.output, failed.output[-2000:]
    assert one_off_containers(host) == []
    audit = [json.loads(line) for line in host.file(f"{APP_DIR}/audit.log").content_string.splitlines()]
    assert [(e["action"], e["service"], e["rc"]) for e in audit[-2:]] == [("run", "backend", 0), ("run", "backend", 3)]
    assert audit[-2]["command"] == f'python3 -c "{query}"'  # who ran what, not the output
    assert set(audit[-2]) == {"action", "service", "command", "rc", "actor", "host", "time"}, audit[-2]
    bad = run_playbook("playbooks/run.yml", "-e", "service=postgres", "-e", "command=psql")
    assert bad.returncode != 0 and "service must name a service of app_services" in bad.output, bad.output[-2000:]


def test_status_in_json_names_the_release_and_every_service(host):
    result = run_playbook("playbooks/status.yml", "-e", "status_format=json")
    assert result.returncode == 0, result.output[-3000:]
    rows = json.loads(result.output.split("ok: [localhost] => ", 1)[1].split("\n\nPLAY RECAP", 1)[0])["msg"]
    assert [(r["host"], r["state"], r["engine"]) for r in rows] == [(HOST, "ok", "compose")], rows
    assert rows[0]["release"] == host.file(f"{APP_DIR}/releases/current").linked_to.rsplit("/", 1)[-1]
    assert set(rows[0]["services"]) == set(SERVICES), rows[0]["services"]
    assert all(s["serving"] == s["containers"] >= 1 for s in rows[0]["services"].values()), rows[0]["services"]
    assert rows[0]["services"]["backend"]["versions"] == [rows[0]["version"]] == ["v1"]
    assert rows[0]["disk_free_gib"] > 0 and rows[0]["uptime"] > 0
    bad = run_playbook("playbooks/status.yml", "-e", "status_format=xml")
    assert bad.returncode != 0 and 'status_format must be table or json, got "xml"' in bad.output
