"""The app role's switch (module_utils.app_switch, module app_switch): what a user checks on the
host after a deploy, an update, a rollback or a failure. The project directory is real (a
temporary one); the engine is a fake that records every call, so the frame's order, its
revert and its refusals are checked without Docker. module_utils.engine_compose has its own
tests (test_engine_compose.py)."""

import hashlib
import http.server
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.selfhost.stack.plugins.module_utils import app_switch as sw
from ansible_collections.selfhost.stack.plugins.module_utils import releases
from ansible_collections.selfhost.stack.plugins.module_utils.engine import Engine, SwitchFailed
from ansible_collections.selfhost.stack.plugins.modules import app_switch as module

COLLECTIONS = Path(__file__).resolve().parents[4] / ".collections"
KEY = "k3yK3yk3yK3yk3yK3yk3yK3yk3yK3y12"  # a hash key as the switch makes one: 32 letters and digits


# -- secrets_hashes: the label values an upgraded host already runs with ----------------------------


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


REDIS_CONFIG = ('# Managed by selfhost.stack: configuration of shop\'s Redis.\ndir /data\nappendonly yes\n'
                'protected-mode no\nrequirepass "rd-pässwörd"\n')


def test_secrets_hashes_of_a_single_secret_service_redis_and_postgres():
    files = [{"service": "worker", "name": "redis_url", "content": "redis://:rd-pässwörd@redis:6379/0"},
             {"service": "postgres", "name": "db_password", "content": "pg-secret"},
             {"service": "redis", "name": "redis.conf", "content": REDIS_CONFIG}]
    hashes = sw.secrets_hashes(files, KEY)
    assert hashes == {
        "worker": sha256(KEY + "redis://:rd-pässwörd@redis:6379/0"),
        # Redis' own password is left out (it changes in the running server): the line is emptied.
        "redis": sha256(KEY + "# Managed by selfhost.stack: configuration of shop's Redis.\ndir /data\nappendonly yes\n"
                              "protected-mode no\n\n"),
    }
    # PostgreSQL reads its password only when it creates the cluster: no label, no hash.
    assert "postgres" not in hashes
    # A rotated Redis password keeps the hash; another setting changes it.
    rotated = [dict(files[2], content=REDIS_CONFIG.replace("rd-pässwörd", "new-one"))]
    assert sw.secrets_hashes(rotated, KEY)["redis"] == hashes["redis"]
    assert sw.secrets_hashes([dict(files[2], content=REDIS_CONFIG + "maxmemory 1gb\n")], KEY)["redis"] != hashes["redis"]
    # The key is part of it: another host's key gives another hash.
    assert sw.secrets_hashes(files, "another-key")["worker"] != hashes["worker"]


def test_a_changed_secret_changes_only_the_hash_of_the_services_that_use_it():
    files = [{"service": "api", "name": "database_url", "content": "postgresql://a"},
             {"service": "api", "name": "session_key", "content": "s1"},
             {"service": "web", "name": "api_token", "content": "t1"}]
    before = sw.secrets_hashes(files, KEY)
    after = sw.secrets_hashes([files[0], dict(files[1], content="s2"), files[2]], KEY)
    assert after["api"] != before["api"] and after["web"] == before["web"]


# The old role's formula (roles/app/vars/main.yml before the switch module), verbatim: the values
# the selfhost.secrets-hash labels of a host deployed by it hold.
OLD_FORMULA = r"""{{ dict(app_model_here | zip(app_model_here | map('extract', app_model) | map(attribute='secrets')
     | map('map', attribute='name') | map('map', 'extract', app_all_secrets) | map('join', '\n')
     | map('regex_replace', '^', __app_hash_key) | map('hash', 'sha256')))
     | combine({'redis': (__app_hash_key ~ (app_redis_config | regex_replace('(?m)^requirepass .*$', ''))) | hash('sha256')}) }}"""
OLD_VARS = {
    "app_model_here": ["api", "worker"],
    "app_model": {"api": {"secrets": [{"name": "database_url"}, {"name": "session_key"}]},
                  "worker": {"secrets": [{"name": "redis_url"}]}},
    "app_all_secrets": {"database_url": "postgresql://shop:pg-pässwörd@postgres:5432/shop", "session_key": "sëssion-€",
                        "redis_url": "redis://:rd-pässwörd@redis:6379/0"},
    "__app_hash_key": KEY,
    "app_redis_config": REDIS_CONFIG,
}
# The secret files the role hands the switch for that model (compose_render.secret_files' order).
NEW_SECRET_FILES = [
    {"service": "api", "name": "database_url", "content": OLD_VARS["app_all_secrets"]["database_url"]},
    {"service": "api", "name": "session_key", "content": OLD_VARS["app_all_secrets"]["session_key"]},
    {"service": "worker", "name": "redis_url", "content": OLD_VARS["app_all_secrets"]["redis_url"]},
    {"service": "postgres", "name": "db_password", "content": "pg-pässwörd"},
    {"service": "redis", "name": "redis.conf", "content": REDIS_CONFIG},
]


def old_role_hashes():
    """The old formula as Ansible evaluates it (the same as an ansible-playbook run of the old role)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    try:
        from ansible.template import trust_as_template
    except ImportError:  # ansible-core before 2.19 templates any string
        def trust_as_template(text):
            return text
    return Templar(loader=DataLoader(), variables=OLD_VARS).template(trust_as_template(OLD_FORMULA))


def test_the_old_formula_as_ansible_evaluates_it():
    """Jinja's '\\n' in the role's folded YAML reached the join as a backslash and an n: Ansible
    escapes backslashes inside a template's string literals. So a service with several secrets
    had its values joined by those two characters, not by a newline."""
    old = old_role_hashes()
    secrets = OLD_VARS["app_all_secrets"]
    assert old["api"] == sha256(KEY + secrets["database_url"] + "\\n" + secrets["session_key"])
    assert old["api"] != sha256(KEY + secrets["database_url"] + "\n" + secrets["session_key"])
    assert old["worker"] == sha256(KEY + secrets["redis_url"])
    assert old["redis"] == sha256(KEY + REDIS_CONFIG.replace('requirepass "rd-pässwörd"', ""))


def test_secrets_hashes_of_single_secret_services_and_redis_equal_the_old_roles():
    old, new = old_role_hashes(), sw.secrets_hashes(NEW_SECRET_FILES, KEY)
    assert new["worker"] == old["worker"]
    assert new["redis"] == old["redis"]
    assert "postgres" not in new


def test_secrets_hashes_of_a_multi_secret_service_differ_from_the_old_roles_only_in_the_join():
    """The old role's Jinja join('\\n') sat in a folded YAML scalar: Ansible joined with a backslash
    and an n. The switch joins with a newline: services with two or more secrets get a new label
    value once after the upgrade (they roll then anyway: every service gained its stop_grace_period,
    see the changelog); single-secret services and Redis keep theirs."""
    old, new = old_role_hashes(), sw.secrets_hashes(NEW_SECRET_FILES, KEY)
    multi = [s for s in new if len([f for f in NEW_SECRET_FILES if f["service"] == s]) > 1]
    assert multi and all(new[s] != old[s] for s in multi)
    assert all(new[s] == old[s] for s in new if s not in multi)


# -- parse_env ----------------------------------------------------------------------------------------


def test_parse_env_reads_the_roles_env_file():
    text = ("# Managed by selfhost.stack\nAPI_IMAGE=registry.example.com:5000/shop/api:1.4.2\n\n"
            "  WEB_IMAGE=shop/web@sha256:" + "a" * 64 + "  \nOPTS=--a=1 --b=2\nEMPTY=\nnot a variable\n"
            "API_SECRETS_HASH=" + "f" * 64 + "\n")
    assert sw.parse_env(text) == {
        "API_IMAGE": "registry.example.com:5000/shop/api:1.4.2",
        "WEB_IMAGE": "shop/web@sha256:" + "a" * 64,
        "OPTS": "--a=1 --b=2",  # only the first = separates
        "EMPTY": "",
        "API_SECRETS_HASH": "f" * 64,
    }
    assert sw.parse_env("") == {} and sw.parse_env(None) == {}


# -- the HTTP part of the health gate, against a real server ----------------------------------------


class Answers(object):
    """What the server answers, in order; the last one again and again."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = 0
        self.headers = []

    def next(self):
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def server():
    servers = []

    def start(answers):
        script = Answers(answers)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                script.headers.append(dict(self.headers))
                status, body = script.next()
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(httpd)
        return "http://127.0.0.1:%d/api/health" % httpd.server_address[1], script

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_the_gate_passes_after_the_wanted_good_answers_in_a_row(server):
    url, script = server([(200, '{"status": "ok", "version": "1.4.2"}')])
    started = time.monotonic()
    line = sw.http_gate(url, 3, 5, "1.4.2", interval=0.01)
    assert line == "health gate passed: 3 good answers in a row from %s" % url
    assert script.asked == 3 and time.monotonic() - started < 3


def test_an_answer_without_the_expected_text_never_passes(server):
    url, script = server([(200, '{"status": "ok", "version": "1.4.1"}')])
    with pytest.raises(SwitchFailed) as failed:
        sw.http_gate(url, 2, 1, "1.4.2", interval=0.05)
    assert failed.value.check == "Wait for consecutive good answers through Nginx"
    assert failed.value.msg.endswith("""last: answer without '1.4.2': {"status": "ok", "version": "1.4.1"}""")
    assert script.asked > 2


def test_a_failure_resets_the_streak(server):
    url, script = server([(200, "ok"), (200, "ok"), (500, "boom"), (200, "ok"), (200, "ok"), (200, "ok")])
    sw.http_gate(url, 3, 5, "ok", interval=0.01)
    assert script.asked == 6  # two good, one bad, then three good


def test_the_timeout_message_names_the_url_the_wanted_answers_and_the_last_one(server):
    url, _script = server([(503, "maintenance")])
    with pytest.raises(SwitchFailed) as failed:
        sw.http_gate(url, 5, 1, "", interval=0.05)
    assert failed.value.msg == ("health gate: 5 good answers in a row wanted from %s within 1s; "
                                "last: HTTPError: HTTP Error 503: Service Unavailable" % url)
    assert failed.value.reason().startswith("Wait for consecutive good answers through Nginx: health gate:")


def test_the_gate_sends_the_maintenance_token_back(server):
    url, script = server([(200, "ok")])
    sw.http_gate(url, 2, 5, "ok", interval=0.01, headers={sw.GATE_HEADER: "0a1b"})
    assert [h.get(sw.GATE_HEADER) for h in script.headers] == ["0a1b", "0a1b"]


def test_the_maintenance_token_is_read_from_the_file_maintenance_yml_writes():
    text = ('# Maintenance mode, turned on by playbooks/maintenance.yml; -e maintenance=off removes this file.\n'
            'set $selfhost_maintenance "3f9c0d";\n')
    assert sw.maintenance_token(text) == "3f9c0d"
    assert sw.maintenance_token(None) is None
    assert sw.maintenance_token('set $selfhost_maintenance "";\n') is None


def test_a_port_nobody_listens_on_is_a_bad_answer(server):
    url, _script = server([(200, "ok")])
    port = int(url.split(":")[2].split("/")[0])
    closed = url.replace(":%d/" % port, ":%d/" % free_port())
    started = time.monotonic()
    with pytest.raises(SwitchFailed, match=r"within 1s; last: URLError: .*(refused|Connection)"):
        sw.http_gate(closed, 1, 1, "", interval=0.05)
    assert time.monotonic() - started < 5


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Project: the files of the project directory ----------------------------------------------------


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def project(tmp_path):
    p = sw.Project(str(tmp_path / "shop"), False)
    p.ensure_directories()
    return p


def test_ensure_directories_creates_them_with_their_modes(tmp_path):
    p = sw.Project(str(tmp_path / "shop"), False)
    assert p.ensure_directories([("secrets/api", 0o700)])
    modes = dict((rel, mode_of(p.full(rel))) for rel in ("", "secrets", "secrets/api", "nginx", "selfhost", "static"))
    assert modes == {"": 0o750, "secrets": 0o700, "secrets/api": 0o700, "nginx": 0o755, "selfhost": 0o755, "static": 0o755}
    assert all(os.stat(p.full(rel)).st_uid == 0 for rel in modes)
    assert not p.ensure_directories([("secrets/api", 0o700)])  # nothing to do


def test_ensure_directories_reports_a_wrong_mode_and_fixes_it(project):
    os.chmod(project.full("secrets"), 0o755)
    assert project.ensure_directories()
    assert mode_of(project.full("secrets")) == 0o700


def test_ensure_directories_in_check_mode_creates_nothing(tmp_path):
    p = sw.Project(str(tmp_path / "shop"), True)
    assert p.ensure_directories()
    assert not (tmp_path / "shop").exists()
    q = sw.Project(str(tmp_path / "other"), False)
    q.ensure_directories()
    os.chmod(q.full("nginx"), 0o777)
    assert sw.Project(q.path, True).ensure_directories()
    assert mode_of(q.full("nginx")) == 0o777


def test_write_files_writes_content_mode_and_owner_and_reports_only_changed_paths(project):
    specs = [{"path": "compose.yaml", "content": "services: {}\n", "mode": "0640"},
             {"path": "selfhost/probe", "content": "#!/bin/sh\n", "mode": "0755"}]
    assert project.write_files(specs) == ["compose.yaml", "selfhost/probe"]
    assert Path(project.full("compose.yaml")).read_text() == "services: {}\n"
    assert (mode_of(project.full("compose.yaml")), mode_of(project.full("selfhost/probe"))) == (0o640, 0o755)
    assert os.stat(project.full("compose.yaml")).st_uid == 0
    inode = os.lstat(project.full("compose.yaml")).st_ino
    again = sw.Project(project.path, False)
    assert again.write_files([dict(specs[0], content="services: {api: {}}\n"), specs[1]]) == ["compose.yaml"]
    assert os.lstat(project.full("compose.yaml")).st_ino != inode  # renamed over: atomic
    assert sorted(os.listdir(project.path)) == ["compose.yaml", "nginx", "secrets", "selfhost", "static"]
    assert again.changed_files == ["compose.yaml"]
    assert again.diffs == [{"before_header": project.full("compose.yaml"), "after_header": project.full("compose.yaml"),
                            "before": "services: {}\n", "after": "services: {api: {}}\n"}]
    assert not again.edge_changed


def test_a_secret_file_gets_its_owner_and_never_reaches_the_diffs(project):
    os.makedirs(project.full("secrets/api"))
    secret = {"path": "secrets/api/session_key", "content": "TOP-s3cret-ä", "mode": "0400", "owner": "1000", "group": "1001"}
    assert project.write_files([secret], secret=True) == ["secrets/api/session_key"]
    info = os.stat(project.full("secrets/api/session_key"))
    assert (info.st_uid, info.st_gid, mode_of(project.full("secrets/api/session_key"))) == (1000, 1001, 0o400)
    project.write_files([dict(secret, content="NEW-s3cret-ä")], secret=True)
    assert project.diffs == []
    assert "s3cret" not in json.dumps(project.diffs)
    assert project.changed_files == ["secrets/api/session_key", "secrets/api/session_key"]


def test_a_changed_file_of_the_edge_is_noted(project):
    project.write_files([{"path": "selfhost/probe", "content": "x", "mode": "0755"}])
    assert not project.edge_changed
    project.write_files([{"path": "nginx/default.conf", "content": "server {}\n", "mode": "0644"}])
    assert project.edge_changed
    unchanged = sw.Project(project.path, False)
    unchanged.write_files([{"path": "nginx/default.conf", "content": "server {}\n", "mode": "0644"}])
    assert not unchanged.edge_changed


def test_write_files_in_check_mode_reports_and_writes_nothing(project):
    project.write_files([{"path": "compose.yaml", "content": "old\n", "mode": "0640"}])
    preview = sw.Project(project.path, True)
    changed = preview.write_files([{"path": "compose.yaml", "content": "new\n", "mode": "0640"},
                                   {"path": "nginx/default.conf", "content": "server {}\n", "mode": "0644"}])
    assert changed == ["compose.yaml", "nginx/default.conf"] and preview.edge_changed
    assert Path(project.full("compose.yaml")).read_text() == "old\n"
    assert not os.path.exists(project.full("nginx/default.conf"))


def test_the_hash_key_is_made_once(project):
    key = project.hash_key()
    assert re.match(r"^[A-Za-z0-9]{32}$", key)
    assert mode_of(project.full("secrets/.hash-key")) == 0o400 and os.stat(project.full("secrets/.hash-key")).st_uid == 0
    assert sw.Project(project.path, False).hash_key() == key
    assert sw.Project(project.path, True).hash_key() == key


def test_the_hash_key_in_check_mode_is_not_written(project):
    key = sw.Project(project.path, True).hash_key()
    assert len(key) == 32 and not os.path.exists(project.full("secrets/.hash-key"))


# -- Lock ---------------------------------------------------------------------------------------------


def test_the_lock_is_taken_and_released(tmp_path):
    lock = sw.Lock(str(tmp_path / ".deploy.lock"), "web1", False)
    lock.take("alice since 2026-12-07T10:00:00Z, version 1.4.2")
    assert (tmp_path / ".deploy.lock" / "owner").read_text() == "alice since 2026-12-07T10:00:00Z, version 1.4.2\n"
    lock.release()
    assert not (tmp_path / ".deploy.lock").exists()
    lock.release()  # twice is harmless


def test_a_second_deploy_finds_the_lock_and_names_its_holder(tmp_path):
    first = sw.Lock(str(tmp_path / ".deploy.lock"), "web1", False)
    first.take("alice since 2026-12-07T10:00:00Z, version 1.4.2")
    second = sw.Lock(str(tmp_path / ".deploy.lock"), "web1", False)
    with pytest.raises(SwitchFailed) as failed:
        second.take("bob")
    assert "web1: another deploy holds the lock %s (alice since 2026-12-07T10:00:00Z, version 1.4.2)" % (
        tmp_path / ".deploy.lock") in failed.value.msg
    assert "app_lock_force=true" in failed.value.msg
    assert failed.value.details["before_change"]
    second.release()  # not taken: the holder's lock stays
    assert (tmp_path / ".deploy.lock" / "owner").read_text().startswith("alice")
    first.release()


def test_force_breaks_a_stale_lock(tmp_path):
    (tmp_path / ".deploy.lock").mkdir()
    (tmp_path / ".deploy.lock" / "owner").write_text("carol since 2026-12-01T00:00:00Z, version 1.0\n")
    lock = sw.Lock(str(tmp_path / ".deploy.lock"), "web1", True)
    lock.take("bob")
    assert (tmp_path / ".deploy.lock" / "owner").read_text() == "bob\n"
    lock.release()
    assert not (tmp_path / ".deploy.lock").exists()


# -- the frame, with a fake engine ---------------------------------------------------------------------


class World(object):
    """What a fake engine sees and does on the host, across runs of the switch."""

    def __init__(self, project_dir):
        self.project_dir = project_dir
        self.calls = []
        self.faults = {}  # step -> [exception or None per call]
        self.seen = {}  # step -> the live files when it ran
        self.staged = []
        self.running = None  # the compose.yaml the containers run
        self.gate_fails = ()  # versions the health gate refuses
        self.gate_headers = []  # the headers of each gate
        self.lock_seen = []
        self.prunes = []  # (refs, ids) of each prune
        self.pruned = None  # what the engine's prune returns; an exception: raised

    def live(self):
        out = {}
        for name in ("compose.yaml", ".env"):
            path = os.path.join(self.project_dir, name)
            out[name] = Path(path).read_text() if os.path.exists(path) else None
        return out

    def step(self, name):
        self.calls.append(name)
        self.seen[name] = self.live()
        self.lock_seen.append(os.path.isdir(os.path.join(self.project_dir, ".deploy.lock")))
        faults = self.faults.get(name)
        fault = faults.pop(0) if faults else None
        if fault is not None:
            raise fault


class FakeEngine(Engine):
    """Records each call in module.world; a fault scripted for a step raises there."""

    name = "fake"

    @property
    def world(self):
        return self.module.world

    def preflight(self):
        self.world.step("preflight")

    def observe(self):
        self.world.step("observe")

    def validate(self, staged):
        self.world.staged.append(dict((k, Path(v).read_text()) for k, v in staged.items()))
        self.world.step("validate")

    def plan(self, files_changed):
        self.world.step("plan")
        return {"api": "another configuration"} if files_changed else {}

    def prepare(self, rollout):
        self.world.step("prepare")

    def migrate(self, migrations, marker, files=None):
        self.world.migrate_files = dict((k, (v, Path(v).read_text())) for k, v in (files or {}).items())
        self.world.step("migrate")
        return False

    def converge(self, rollout):
        self.world.step("converge")
        live = self.world.live()["compose.yaml"]
        if live != self.world.running:
            rollout.note("api: rolled")
            self.world.running = live

    def finish(self, rollout):
        self.world.step("finish")

    def verify(self):
        self.world.step("verify")

    def digests(self):
        self.world.step("digests")
        return {"api": "sha256:" + "1" * 64}

    def retire_passwords(self):
        self.world.step("retire_passwords")
        return False

    def prune(self, refs, ids):
        self.world.prunes.append((refs, ids))
        if isinstance(self.world.pruned, Exception):
            raise self.world.pruned
        return self.world.pruned


class FakeModule(object):
    def __init__(self, world, check_mode=False):
        self.world = world
        self.check_mode = check_mode

    def run_command(self, argv, cwd=None, data=None, **kwargs):
        self.world.calls.append("docker " + " ".join(argv[1:3]))
        return 1, "", "no docker here"

    def get_bin_path(self, name):
        return None


def release_files(version):
    return [{"path": "compose.yaml", "content": "name: shop\nservices:\n  api:\n    image: ${API_IMAGE}\n"
                                                "    labels: {selfhost.secrets-hash: '${API_SECRETS_HASH}'}\n"
                                                "# release %s\n" % version, "mode": "0640"},
            {"path": ".env", "content": "# Managed by selfhost.stack\nAPI_IMAGE=shop/api:%s\n" % version, "mode": "0640"},
            {"path": "nginx/default.conf", "content": "server { listen 80; }  # %s\n" % version, "mode": "0644"}]


def secret_files(session_key="s3ss10n-ä"):
    return [{"service": "api", "name": "database_url", "content": "postgresql://shop:pg-S3cret@postgres/shop"},
            {"service": "api", "name": "session_key", "content": session_key, "owner": "1000", "group": "1000"}]


def params(project_dir, **overrides):
    """The module's parameters as Ansible hands them over (every default applied)."""
    args = {"project_dir": str(project_dir), "name": "shop", "host": "web1", "version": "1.0", "actor": "alice",
            "files": release_files(overrides.get("version", "1.0")), "secret_files": secret_files(),
            "services": ["api", "nginx", "postgres", "redis"], "routed": ["api"],
            "pools": [{"service": "api", "pool": "api_pool", "port": 8000}],
            "gate": {"url": "http://127.0.0.1/api/health", "successes": 2, "timeout": 5, "expect": "{version}"}}
    args.update(overrides)
    result = ArgumentSpecValidator(module.argument_spec()).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """A UTC clock one minute further at each reading: each release gets its own id."""
    import datetime
    now = [datetime.datetime(2026, 12, 7, 10, 0, 0, tzinfo=datetime.timezone.utc)]

    def utcnow():
        now[0] += datetime.timedelta(minutes=1)
        return now[0]
    monkeypatch.setattr(releases, "utcnow", utcnow)


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = World(str(tmp_path / "shop"))

    def gate(url, wanted, timeout, expect, interval=sw.GATE_INTERVAL, headers=None):
        w.calls.append("http_gate " + expect)
        w.gate_headers.append(headers)
        if expect in w.gate_fails:
            raise SwitchFailed("Wait for consecutive good answers through Nginx",
                               "health gate: %d good answers in a row wanted from %s within %ss; last: HTTPError: "
                               "HTTP Error 502: Bad Gateway" % (wanted, url, timeout))
        return "health gate passed: %d good answers in a row from %s" % (wanted, url)
    monkeypatch.setattr(sw, "http_gate", gate)
    return w


def run(world, check_mode=False, **overrides):
    """One run of the switch: (result, the SwitchFailed it raised or None)."""
    p = params(world.project_dir, **overrides)
    switch = sw.Switch(FakeModule(world, check_mode), FakeEngine, p)
    world.calls, world.lock_seen = [], []
    try:
        return switch.run(), None
    except SwitchFailed as exc:
        return switch.result, exc


def audit(world):
    path = os.path.join(world.project_dir, "audit.log")
    return [json.loads(line) for line in Path(path).read_text().splitlines()] if os.path.exists(path) else []


def tree(path):
    """Every file and directory below path: (mode, content or link target)."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            if os.path.islink(full):
                out[os.path.relpath(full, path)] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[os.path.relpath(full, path)] = (mode_of(full), None)
            else:
                out[os.path.relpath(full, path)] = (mode_of(full), Path(full).read_bytes())
    return out


def deployed(world, *versions):
    """A host with a release per version; their ids, oldest first."""
    ids = []
    for version in versions:
        result, failed = run(world, version=version)
        assert failed is None, failed
        ids.append(result["current"])
    return ids


def test_a_first_deploy_runs_the_steps_in_order_and_records_the_release(world):
    result, failed = run(world, version="1.0")
    assert failed is None
    assert world.calls == ["observe", "validate", "prepare", "migrate", "converge", "http_gate 1.0", "finish", "verify",
                           "digests"]
    # Checked before the first change: nothing of the release was live yet; written before the
    # data services start.
    assert world.seen["validate"] == {"compose.yaml": None, ".env": None}
    assert world.seen["prepare"]["compose.yaml"] == release_files("1.0")[0]["content"]
    # The staged .env is the rendered one with each service's keyed secrets hash.
    key = Path(world.project_dir, "secrets/.hash-key").read_text()
    wanted_hash = sha256(key + "postgresql://shop:pg-S3cret@postgres/shop\ns3ss10n-ä")
    assert world.staged[0]["env"] == release_files("1.0")[1]["content"] + (
        "# Keyed hashes of each service's secrets, its label selfhost.secrets-hash: a changed\n"
        "# secret rolls only the services that use it (written by the switch).\nAPI_SECRETS_HASH=%s\n" % wanted_hash)
    assert Path(world.project_dir, ".env").read_text() == world.staged[0]["env"]
    assert Path(world.project_dir, "secrets/api/session_key").read_text() == "s3ss10n-ä"
    assert result["changed"] and result["before"] is None
    assert releases.list_releases(world.project_dir) == [result["current"]]
    assert releases.current_release(world.project_dir) == result["current"]
    assert releases.read_release(world.project_dir, result["current"])["digests"] == {"api": "sha256:" + "1" * 64}
    assert [(e.get("phase"), e.get("action"), e.get("result")) for e in audit(world)] == [
        ("start", "deploy", None), (None, "deploy", "ok"), ("end", "deploy", "ok")]
    assert not os.path.exists(os.path.join(world.project_dir, ".deploy.lock"))
    # The lock was held while the engine worked.
    assert all(world.lock_seen)


def test_old_redis_passwords_are_retired_after_the_gate(world):
    deployed(world, "1.0")
    _result, failed = run(world, version="2.0", retire_passwords=True)
    assert failed is None
    assert world.calls[-4:] == ["finish", "verify", "retire_passwords", "digests"]
    assert world.calls.index("http_gate 2.0") < world.calls.index("retire_passwords")


def test_a_failure_before_any_change_leaves_the_host_as_it_was(world):
    (v1,) = deployed(world, "1.0")
    before = tree(world.project_dir)
    world.faults["validate"] = [SwitchFailed("Validate the Compose file", "services.api.image: invalid", before_change=True)]
    result, failed = run(world, version="2.0", secret_files=secret_files("rotated"))
    assert failed is not None and failed.msg == "services.api.image: invalid"
    after = tree(world.project_dir)
    assert after.pop("audit.log") != before.pop("audit.log")
    assert after == before  # no file written, no release, the lock released
    assert releases.list_releases(world.project_dir) == [v1]
    assert "prepare" not in world.calls and "converge" not in world.calls
    start, end = audit(world)[-2:]
    assert (start["phase"], start["version"], start["from"]) == ("start", "2.0", v1)
    assert (end["phase"], end["result"]) == ("end", "failed")
    assert end["reason"] == "Validate the Compose file: services.api.image: invalid"
    assert result["failed_check"] == end["reason"]


def test_a_first_deploy_that_fails_its_checks_writes_no_project_file(world):
    world.faults["validate"] = [SwitchFailed("Validate the Compose file", "invalid", before_change=True)]
    _result, failed = run(world, version="1.0")
    assert failed is not None
    # The directories, the hash key and the audit log; nothing of the release.
    files = sorted(p for p, (mode, content) in tree(world.project_dir).items() if content is not None)
    assert files == ["audit.log", "secrets/.hash-key"]
    assert [(e["phase"], e["result"] if "result" in e else None) for e in audit(world)] == [("start", None), ("end", "failed")]


def test_an_update_runs_the_switch_of_a_deploy(world):
    (v1,) = deployed(world, "1.0")
    result, failed = run(world, action="update", version="2.0", migrate=False)
    assert failed is None
    # The engine's own refusals of an update first; the fleet's migrations ran before (action
    # migrate): none in the switch.
    assert world.calls == ["preflight", "observe", "validate", "prepare", "converge", "http_gate 2.0", "finish", "verify",
                           "digests"]
    assert releases.list_releases(world.project_dir) == [result["current"], v1]
    assert audit(world)[-1]["action"] == "update" and audit(world)[-1]["result"] == "ok"


def test_an_update_of_a_host_never_deployed_is_refused_before_anything_is_created(world):
    _result, failed = run(world, action="update", version="2.0")
    assert failed is not None and "deploy it first with playbooks/deploy.yml" in failed.msg
    assert not os.path.exists(world.project_dir) and world.calls == ["preflight"]


def test_a_failure_after_the_first_change_reverts_to_the_release_the_host_had(world):
    (v1,) = deployed(world, "1.0")
    world.faults["converge"] = [SwitchFailed("container health", "new api containers did not become healthy"), None]
    result, failed = run(world, version="2.0")
    assert failed is not None
    assert failed.msg.startswith("web1: deploy to 2.0 failed (container health: new api containers did not become healthy).")
    assert "Reverted automatically to release %s (version 1.0)" % v1 in failed.msg
    assert failed.details.get("reverted")
    # The previous release's files are live again and `current` points at it.
    base = os.path.join(releases.releases_dir(world.project_dir), v1)
    for name in ("compose.yaml", ".env"):
        assert Path(world.project_dir, name).read_text() == Path(base, name).read_text()
    assert releases.current_release(world.project_dir) == v1
    assert releases.list_releases(world.project_dir) == [v1]
    # It passed the gate again, for its own version.
    assert world.calls.count("converge") == 2 and world.calls[-3:] == ["http_gate 1.0", "finish", "verify"]
    assert result["reverted_to"] == v1 and result["current"] == v1
    lines = audit(world)[3:]
    assert [(e.get("phase"), e.get("action")) for e in lines] == [("start", "deploy"), (None, "revert"), ("end", "deploy")]
    assert lines[1]["release"] == v1 and lines[1]["from"] == v1 and lines[1]["version"] == "1.0"
    assert lines[2]["result"] == "reverted to %s" % v1
    assert lines[2]["reason"] == "container health: new api containers did not become healthy"
    assert not os.path.exists(os.path.join(world.project_dir, ".deploy.lock"))


def test_an_unexpected_fault_after_the_first_change_reverts_too(world):
    (v1,) = deployed(world, "1.0")
    world.faults["prepare"] = [OSError(28, "No space left on device")]
    result, failed = run(world, version="2.0")
    assert failed is not None and "Reverted automatically to release %s" % v1 in failed.msg
    assert "No space left on device" in failed.msg
    assert releases.current_release(world.project_dir) == v1 and result["reverted_to"] == v1


def test_a_failed_first_deploy_has_no_release_to_revert_to(world):
    world.faults["converge"] = [SwitchFailed("Start the stack", "docker compose up failed (rc 1): no space")]
    result, failed = run(world, version="1.0")
    assert failed.msg == ("web1: deploy of 1.0 failed (Start the stack: docker compose up failed (rc 1): no space); "
                          "no earlier release to revert to.")
    assert releases.list_releases(world.project_dir) == [] and "reverted_to" not in result
    assert audit(world)[-1]["result"] == "failed"
    assert not os.path.exists(os.path.join(world.project_dir, ".deploy.lock"))


def test_the_release_is_recorded_only_after_the_gate(world):
    world.gate_fails = ("1.0",)
    _result, failed = run(world, version="1.0")
    assert failed is not None and "no earlier release to revert to" in failed.msg
    assert "digests" not in world.calls and "finish" not in world.calls
    assert releases.list_releases(world.project_dir) == [] and releases.current_release(world.project_dir) is None
    world.gate_fails = ()
    (v1,) = deployed(world, "1.0")
    world.gate_fails = ("2.0",)
    result, failed = run(world, version="2.0")
    assert "Reverted automatically to release %s" % v1 in failed.msg
    assert "Wait for consecutive good answers through Nginx: health gate" in failed.msg
    assert releases.list_releases(world.project_dir) == [v1] and result["current"] == v1


def test_a_revert_that_fails_too_says_so(world):
    (v1,) = deployed(world, "1.0")
    world.gate_fails = ("1.0", "2.0")
    _result, failed = run(world, version="2.0")
    assert failed.msg.startswith("web1: deploy to 2.0 failed (Wait for consecutive good answers")
    assert "and the revert to release %s failed too (Wait for consecutive good answers" % v1 in failed.msg
    assert audit(world)[-1]["result"] == "failed"


def test_a_rollback_returns_to_the_recorded_files_and_records_no_new_release(world):
    v1, v2 = deployed(world, "1.0", "2.0")
    result, failed = run(world, action="rollback", release="previous", version="2.0", files=[], secret_files=[])
    assert failed is None
    base = os.path.join(releases.releases_dir(world.project_dir), v1)
    for name in ("compose.yaml", ".env"):
        assert Path(world.project_dir, name).read_text() == Path(base, name).read_text()
    assert releases.current_release(world.project_dir) == v1 and result["current"] == v1
    assert releases.list_releases(world.project_dir) == [v2, v1]
    assert result["release_to"] == v1 and result["changed"]
    assert "http_gate 1.0" in world.calls
    events = audit(world)
    assert [(e.get("phase"), e.get("action"), e.get("release")) for e in events[-3:]] == [
        ("start", "rollback", None), (None, "rollback", v1), ("end", "rollback", v1)]
    assert events[-1]["version"] == "1.0" and events[-1]["result"] == "ok"


def test_a_rollback_to_an_unknown_release_fails_before_any_change(world):
    v1, v2 = deployed(world, "1.0", "2.0")
    before = tree(world.project_dir)
    _result, failed = run(world, action="rollback", release="20260101T000000Z-0.9", files=[], secret_files=[])
    assert failed is not None and failed.details["before_change"]
    assert "no release 20260101T000000Z-0.9 in %s/releases (known: %s, %s)" % (world.project_dir, v2, v1) in failed.msg
    assert world.calls == []
    after = tree(world.project_dir)
    after.pop("audit.log"), before.pop("audit.log")
    assert after == before


def test_check_mode_writes_nothing_takes_no_lock_and_reports_the_changed_files(world):
    (v1,) = deployed(world, "1.0")
    before = tree(world.project_dir)
    result, failed = run(world, check_mode=True, version="2.0", secret_files=secret_files("rotated"))
    assert failed is None
    assert tree(world.project_dir) == before  # no file, no audit line, no release
    assert world.lock_seen and not any(world.lock_seen)
    assert result["changed"]
    assert sorted(result["files"]) == [".env", "compose.yaml", "nginx/default.conf", "secrets/api/session_key"]
    assert "api: another configuration" in result["changes"]
    assert "prepare" not in world.calls and "converge" not in world.calls and "digests" not in world.calls
    # The diff shows the project files, never a secret.
    assert "rotated" not in json.dumps(result) and "s3ss10n" not in json.dumps(result)
    assert sorted(d["before_header"] for d in result["diff"]) == [
        os.path.join(world.project_dir, p) for p in (".env", "compose.yaml", "nginx/default.conf")]


def test_check_mode_on_a_host_never_deployed_creates_nothing(world):
    result, failed = run(world, check_mode=True, version="1.0")
    assert failed is None and result["changed"]
    assert not os.path.exists(world.project_dir)
    assert "compose.yaml" in result["files"]


def test_in_maintenance_mode_the_gate_sends_the_token_of_maintenance_inc(world):
    run(world)
    assert world.gate_headers == [None]
    with open(os.path.join(world.project_dir, "nginx", "maintenance.inc"), "w") as f:
        f.write('set $selfhost_maintenance "c0ffee";\n')
    run(world, version="2.0")
    assert world.gate_headers[-1] == {"X-Selfhost-Gate": "c0ffee"}


def test_a_run_that_changes_nothing_skips_the_http_gate(world):
    (v1,) = deployed(world, "1.0")
    result, failed = run(world, version="1.0")
    assert failed is None and not result["changed"]
    assert not [c for c in world.calls if c.startswith("http_gate")]
    assert world.calls[-3:] == ["finish", "verify", "digests"]  # the containers are still checked
    assert releases.list_releases(world.project_dir) == [v1] and result["current"] == v1


def test_preflight_refuses_a_host_never_deployed(world):
    _result, failed = run(world, action="preflight", version="2.0")
    assert failed.details["before_change"]
    assert failed.msg == "web1 has no %s/compose.yaml: deploy it first with playbooks/deploy.yml" % world.project_dir
    assert not os.path.exists(world.project_dir)


def test_preflight_refuses_while_another_deploy_holds_the_lock(world):
    deployed(world, "1.0")
    os.mkdir(os.path.join(world.project_dir, ".deploy.lock"))
    before = tree(world.project_dir)
    _result, failed = run(world, action="preflight", version="2.0")
    assert "web1: another deploy holds the lock %s/.deploy.lock" % world.project_dir in failed.msg
    assert tree(world.project_dir) == before


def test_preflight_refuses_too_little_free_space(world, monkeypatch):
    deployed(world, "1.0")
    real = os.statvfs

    class Stat(object):
        f_bavail, f_frsize = 100 * 256, 4096  # 100 MB

    monkeypatch.setattr(sw.os, "statvfs", lambda path: Stat() if path == "/var/lib/docker" else real(path))
    before = tree(world.project_dir)
    _result, failed = run(world, action="preflight", version="2.0", min_free_mb=2000)
    assert failed.msg == ("web1 has 100 MB free under /var/lib/docker; the update wants 2000 MB (app_update_min_free_mb).")
    assert tree(world.project_dir) == before
    _result, failed = run(world, action="preflight", version="2.0", min_free_mb=100)
    assert failed is None


def test_a_preflight_that_passes_checks_the_new_release_and_changes_nothing(world):
    deployed(world, "1.0")
    before = tree(world.project_dir)
    result, failed = run(world, action="preflight", version="2.0", secret_files=secret_files("rotated"))
    assert failed is None and not result["changed"]
    assert world.calls == ["preflight", "observe", "validate"]
    assert "# release 2.0" in world.staged[-1]["compose"]
    assert tree(world.project_dir) == before


def test_migrate_next_runs_the_new_releases_migrations_beside_the_live_files(world):
    deployed(world, "1.0")
    live = world.live()
    result, failed = run(world, action="migrate", version="2.0", migrations=["api-migrate-1"], migration_marker="m2")
    assert failed is None and result["changed"]
    paths = dict((k, v[0]) for k, v in world.migrate_files.items())
    assert paths == {"compose": os.path.join(world.project_dir, ".next-composeyaml"),
                     "env": os.path.join(world.project_dir, ".next-env")}
    assert "# release 2.0" in world.migrate_files["compose"][1]
    assert "API_IMAGE=shop/api:2.0" in world.migrate_files["env"][1]
    assert not os.path.exists(paths["compose"]) and not os.path.exists(paths["env"])  # only for the run
    assert world.live() == live


def test_migrate_next_holds_the_deploy_lock_while_the_migrations_run(world):
    deployed(world, "1.0")
    _result, failed = run(world, action="migrate", version="2.0", migrations=["api-migrate-1"], migration_marker="m2")
    assert failed is None and world.lock_seen == [True]
    assert not os.path.exists(os.path.join(world.project_dir, ".deploy.lock"))


def test_migrate_next_waits_for_no_switch_and_names_the_holder(world):
    deployed(world, "1.0")
    holder = sw.Lock(os.path.join(world.project_dir, ".deploy.lock"), "web1", False)
    holder.take("alice since 2026-12-07T10:00:00Z, version 1.5")
    _result, failed = run(world, action="migrate", version="2.0", migrations=["api-migrate-1"], migration_marker="m2")
    assert failed is not None and "another deploy holds the lock" in failed.msg and "alice" in failed.msg
    assert world.calls == [] and not [n for n in os.listdir(world.project_dir) if n.startswith(".next-")]
    holder.release()


def test_migrate_next_removes_its_files_and_the_lock_when_the_migration_fails(world):
    deployed(world, "1.0")
    world.faults["migrate"] = [SwitchFailed("Run each migration in a one-off container", "api-migrate-1 failed (rc 1)")]
    _result, failed = run(world, action="migrate", version="2.0", migrations=["api-migrate-1"], migration_marker="m2")
    assert failed is not None and failed.msg == "api-migrate-1 failed (rc 1)"
    assert not [n for n in os.listdir(world.project_dir) if n.startswith(".next-")]
    assert not os.path.exists(os.path.join(world.project_dir, ".deploy.lock"))


def test_migrate_next_skips_a_set_that_ran(world):
    deployed(world, "1.0")
    Path(world.project_dir, ".migrated").write_text("m1\nm2\n")
    result, failed = run(world, action="migrate", version="2.0", migrations=["api-migrate-1"], migration_marker="m2")
    assert failed is None and not result["changed"] and world.calls == []


# -- the module as Ansible runs it: no secret in its output ------------------------------------------


SECRET_VALUES = ("file-s3cret-Ä", "db-Pa55-w0rd", "redis-Pa55-w0rd")


def run_module(tmp_path, args):
    argfile = tmp_path / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    out = subprocess.run([sys.executable, "-m", "ansible_collections.selfhost.stack.plugins.modules.app_switch",
                          str(argfile)], capture_output=True, text=True, timeout=60, check=False,
                         env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    return out.stdout, json.loads(out.stdout)


def secret_args(tmp_path, **extra):
    args = {"project_dir": str(tmp_path / "shop"), "name": "shop", "host": "web1",
            "secret_files": [{"service": "api", "name": "session_key", "content": SECRET_VALUES[0]}],
            "db_password": SECRET_VALUES[1], "redis_password": SECRET_VALUES[2]}
    args.update(extra)
    return args


@pytest.mark.parametrize("action", ["check", "preflight"])
def test_the_modules_output_never_shows_a_secret(tmp_path, action):
    stdout, result = run_module(tmp_path, secret_args(tmp_path, action=action))
    assert bool(result.get("failed")) == (action == "preflight"), result
    if action == "preflight":
        assert "has no %s/compose.yaml" % (tmp_path / "shop") in result["msg"]
    for value in SECRET_VALUES:
        assert value not in stdout
    invocation = result["invocation"]["module_args"]
    assert invocation["db_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert invocation["redis_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert invocation["secret_files"][0]["content"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert invocation["secret_files"][0]["name"] == "session_key"


def test_the_module_refuses_to_keep_fewer_than_two_releases(tmp_path):
    _stdout, result = run_module(tmp_path, secret_args(tmp_path, action="check", keep=1))
    assert result["failed"] and "keep must be at least 2" in result["msg"]


def test_the_documentation_names_every_argument_with_its_type_and_default():
    """What ansible-doc shows is what the module takes (ansible-test's validate-modules, in short)."""
    import yaml

    def compare(doc, spec, where=""):
        assert sorted(doc) == sorted(spec), where
        for name, option in spec.items():
            documented = doc[name]
            for field, missing in (("type", "str"), ("default", None), ("choices", None), ("required", False),
                                   ("elements", None)):
                assert documented.get(field, missing) == option.get(field, missing), (where + name, field)
            if "options" in option or "suboptions" in documented:
                compare(documented.get("suboptions", {}), option.get("options", {}), where + name + ".")

    compare(yaml.safe_load(module.DOCUMENTATION)["options"], module.argument_spec())


def test_a_rollback_to_previous_on_a_host_with_one_release_says_there_is_none(world):
    (v1,) = deployed(world, "1.0")
    _result, failed = run(world, action="rollback", release="previous", files=[], secret_files=[])
    assert failed is not None and failed.details["before_change"]
    assert "None" not in failed.msg and "previous" in failed.msg and v1 in failed.msg


# -- static files copied out of the images ----------------------------------------------------------


class ImageDocker(object):
    """A docker CLI for the static files: images are dicts path -> {file: text}; `docker cp`
    copies a directory of one, or fails as Docker does when the image lacks it."""

    def __init__(self, images):
        self.images = images  # reference -> (id, {directory: {file: text}})
        self.containers = {}
        self.created = []

    def __call__(self, argv):
        args = argv[1:]
        if args[:2] == ["image", "inspect"]:
            ref = args[-1]
            return (0, self.images[ref][0] + "\n", "") if ref in self.images else (1, "", "No such image: " + ref)
        if args[0] == "create":
            cid = "c%d" % len(self.created)
            self.created.append(cid)
            self.containers[cid] = args[-1]
            return 0, cid + "\n", ""
        if args[0] == "cp":
            cid, source = args[1].split(":", 1)
            files = self.images[self.containers[cid]][1].get(source[:-len("/.")])
            if files is None:
                return 1, "", "Error response from daemon: Could not find the file %s in container %s" % (source, cid)
            for name, text in files.items():
                Path(args[2], name).write_text(text)
            return 0, "", ""
        if args[0] == "rm":
            self.containers.pop(args[-1], None)
            return 0, "", ""
        return 1, "", "no docker here"


class StaticModule(FakeModule):
    def __init__(self, world, docker, check_mode=False):
        super(StaticModule, self).__init__(world, check_mode)
        self.docker = docker

    def run_command(self, argv, cwd=None, data=None, **kwargs):
        return self.docker(argv)


def static_run(world, docker, version, from_image="/app/static"):
    files = release_files(version)
    files[1]["content"] += "API_IMAGE=shop/api:%s\n" % version
    p = params(world.project_dir, version=version, files=files,
               static=[{"service": "api", "path": "/static/", "from_image": from_image}])
    switch = sw.Switch(StaticModule(world, docker), FakeEngine, p)
    world.calls = []
    try:
        return switch.run(), None
    except SwitchFailed as exc:
        return switch.result, exc


def static_images():
    return ImageDocker({
        "shop/api:1.0": ("sha256:aaa", {"/app/static": {"app.css": "body {} /* 1.0 */"}, "/app/other": {"x.js": "x"}}),
        "shop/api:2.0": ("sha256:bbb", {"/app/static": {"app.css": "body {} /* 2.0 */"}}),
    })


def test_static_files_are_copied_out_of_the_image_once_per_image_and_directory(world):
    docker = static_images()
    result, failed = static_run(world, docker, "1.0")
    assert failed is None
    served = Path(world.project_dir, "static/api/static")
    assert (served / "app.css").read_text() == "body {} /* 1.0 */"
    assert (served / ".image").read_text() == "sha256:aaa /app/static\n"
    assert mode_of(str(served)) == 0o755 and docker.containers == {}  # the container is removed
    # The same image and directory again: nothing is copied.
    created = len(docker.created)
    _result, failed = static_run(world, docker, "1.0")
    assert failed is None and len(docker.created) == created
    # A new image: its files replace the old ones; another directory of the image: copied too.
    _result, failed = static_run(world, docker, "2.0")
    assert failed is None and (served / "app.css").read_text() == "body {} /* 2.0 */"
    _result, failed = static_run(world, docker, "1.0", from_image="/app/other")
    assert failed is None and sorted(os.listdir(str(served))) == [".image", "x.js"]
    assert not [n for n in os.listdir(str(served.parent)) if ".tmp." in n or n.endswith(".old")]


def test_a_static_path_the_image_lacks_stops_the_switch_before_any_change(world):
    docker = static_images()
    assert static_run(world, docker, "1.0")[1] is None
    before = tree(world.project_dir)
    _result, failed = static_run(world, docker, "2.0", from_image="/app/missing")
    assert failed is not None and failed.details["before_change"]
    assert "app_services.api.static: /app/missing is not in the image shop/api:2.0" in failed.msg
    assert "Could not find the file" in failed.msg
    after = tree(world.project_dir)
    assert {k: v for k, v in after.items() if k != "audit.log"} == {k: v for k, v in before.items() if k != "audit.log"}
    assert "converge" not in world.calls and docker.containers == {}


# -- failures on the way: what the next plain run finds ------------------------------------
def test_a_check_that_fails_without_saying_before_change_still_reverts_nothing(world):
    (v1,) = deployed(world, "1.0")
    before = tree(world.project_dir)
    world.faults["validate"] = [SwitchFailed("Validate the Compose file", "docker compose config failed (rc 1)")]
    result, failed = run(world, version="2.0")
    assert failed is not None and not failed.details.get("reverted")
    assert "converge" not in world.calls and "reverted_to" not in result and not result["changed"]
    assert audit(world)[-1]["result"] == "failed"
    after = tree(world.project_dir)
    after.pop("audit.log"), before.pop("audit.log")
    assert after == before


def test_the_lock_is_released_when_the_audit_log_cannot_be_written(world, monkeypatch):
    deployed(world, "1.0")
    real = releases.audit

    def audit_fails_at_the_end(path, event):
        if event.get("phase") == "end":
            raise OSError(28, "No space left on device")
        real(path, event)
    monkeypatch.setattr(releases, "audit", audit_fails_at_the_end)
    with pytest.raises(OSError):
        run(world, version="2.0")
    assert not os.path.exists(os.path.join(world.project_dir, ".deploy.lock"))


def test_a_lock_that_cannot_be_written_is_not_left_behind(tmp_path, monkeypatch):
    lock = sw.Lock(str(tmp_path / ".deploy.lock"), "web1", False)
    monkeypatch.setattr(sw, "process_start", lambda pid: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        lock.take("alice")
    assert not os.path.exists(str(tmp_path / ".deploy.lock"))


def test_what_a_killed_run_staged_is_cleared_by_the_next(world):
    deployed(world, "1.0")
    Path(world.project_dir, ".staged-abc123").write_text("services: {}\n")
    leftover = Path(world.project_dir, "static", "web", "app", ".assets.tmp.x1y2")
    leftover.mkdir(parents=True)
    (leftover / "main.js").write_text("old")
    _result, failed = run(world, version="2.0", static=[{"service": "web", "path": "/app/assets", "from_image": "/srv"}])
    # (no docker here: the copy fails and stops the switch, after the leftovers went)
    assert failed is not None
    assert not Path(world.project_dir, ".staged-abc123").exists() and not leftover.exists()


def test_a_rollback_leaves_the_passwords_as_they_are(world):
    deployed(world, "1.0", "2.0")
    _result, failed = run(world, action="rollback", release="previous", files=[], secret_files=[],
                          db_password="never-deployed", retire_passwords=True)
    assert failed is None
    assert "observe" not in world.calls and "retire_passwords" not in world.calls


def test_a_revert_keeps_the_new_secrets_and_rolls_the_services_that_use_them(world):
    (v1,) = deployed(world, "1.0")
    world.faults["converge"] = [SwitchFailed("container health", "new api containers did not become healthy"), None]
    _result, failed = run(world, version="2.0", secret_files=secret_files("rotated"))
    assert failed.details.get("reverted")
    live = sw.parse_env(Path(world.project_dir, ".env").read_text())
    recorded = sw.parse_env(Path(releases.releases_dir(world.project_dir), v1, ".env").read_text())
    assert live["API_IMAGE"] == recorded["API_IMAGE"] == "shop/api:1.0"
    # The secret files stay the new ones; the release it returned to gets their hash.
    assert Path(world.project_dir, "secrets/api/session_key").read_text() == "rotated"
    assert live["API_SECRETS_HASH"] != recorded["API_SECRETS_HASH"]
    key = Path(world.project_dir, "secrets/.hash-key").read_text()
    assert live["API_SECRETS_HASH"] == sw.secrets_hashes(secret_files("rotated"), key)["api"]
    assert Path(world.project_dir, ".env").read_text().count("_SECRETS_HASH=") == 1


def test_the_audit_log_masks_a_secret_a_tool_quoted(world):
    deployed(world, "1.0")
    world.faults["prepare"] = [SwitchFailed("Change the database password", "ERROR: near PASSWORD 'pg-N3w-secret'")]
    _result, failed = run(world, version="2.0", db_password="pg-N3w-secret")
    assert failed is not None
    assert "pg-N3w-secret" not in Path(world.project_dir, "audit.log").read_text()
    assert "near PASSWORD '********'" in audit(world)[-1]["reason"]


class PasswordEngine(Engine):
    name = "passwords"


def test_a_password_file_rewritten_before_the_server_took_it_is_held_until_the_switch_passed(tmp_path):
    project = sw.Project(str(tmp_path / "shop"), False)
    project.ensure_directories([("secrets/postgres", 0o700)])
    Path(project.full("secrets/postgres/db_password")).write_text("old-pw")
    engine = PasswordEngine(FakeModule(World(project.path)), {"project_dir": project.path}, project)
    engine.read_running_passwords(["postgres/db_password"])
    engine.hold_running_passwords([{"path": "secrets/postgres/db_password", "content": "new-pw"}])
    Path(project.full("secrets/postgres/db_password")).write_text("new-pw")  # the switch wrote it, then stopped
    held = project.full("secrets/.running/postgres-db_password")
    assert mode_of(held) == 0o400 and mode_of(os.path.dirname(held)) == 0o700
    # The next run still knows what the server runs with, and changes it.
    again = PasswordEngine(FakeModule(World(project.path)), {"project_dir": project.path}, project)
    again.read_running_passwords(["postgres/db_password"])
    assert again.running_passwords == {"postgres/db_password": "old-pw"}
    again.hold_running_passwords([{"path": "secrets/postgres/db_password", "content": "new-pw"}])
    assert Path(held).read_text() == "old-pw"
    again.release_held_passwords()
    assert not os.path.exists(os.path.dirname(held))
    unchanged = PasswordEngine(FakeModule(World(project.path)), {"project_dir": project.path}, project)
    unchanged.read_running_passwords(["postgres/db_password"])
    unchanged.hold_running_passwords([{"path": "secrets/postgres/db_password", "content": "new-pw"}])
    assert unchanged.running_passwords == {"postgres/db_password": "new-pw"} and not os.path.exists(held)


# -- pruning after a switch that passed -------------------------------------------------------------

PRUNED = {"containers": [], "images": ["shop/api:0.9"], "other": True}


def test_a_switch_that_passed_prunes_keeping_every_release_in_the_history(world):
    deployed(world, "1.0")
    world.pruned = dict(PRUNED)
    result, failed = run(world, version="2.0", images={"api": "shop/api:2.0"})
    assert failed is None and result["pruned_images"] == ["shop/api:0.9"]
    refs, ids = world.prunes[-1]
    assert refs == ["shop/api:2.0"] and ids == {"sha256:" + "1" * 64}  # the releases' digests, this run's images
    assert any(line.startswith("prune: removed shop/api:0.9, dangling images and build cache; ") for line in result["changes"])
    line = [e for e in audit(world) if e.get("action") == "prune"][-1]
    assert (line["images"], line["containers"], line["dangling_and_cache"]) == (["shop/api:0.9"], [], True)
    assert line["release"] == result["current"] and line["freed_bytes"] >= 0
    assert audit(world)[-1]["phase"] == "end"  # pruned under the lock, before the end line


def test_a_prune_that_fails_leaves_the_switch_passed_and_says_so(world):
    deployed(world, "1.0")
    world.pruned = OSError("docker: cannot connect")
    result, failed = run(world, version="2.0")
    assert failed is None and result["current"].endswith("-2.0") and "reverted_to" not in result
    assert "prune failed: OSError: docker: cannot connect" in result["changes"]
    assert audit(world)[-1]["result"] == "ok"


def test_nothing_pruned_writes_no_audit_line_and_changes_nothing(world):
    deployed(world, "1.0")
    world.pruned = {"containers": [], "images": [], "other": False}
    result, failed = run(world, version="1.0")
    assert failed is None and not result["changed"] and world.prunes
    assert not [e for e in audit(world) if e.get("action") == "prune"]


def test_no_prune_after_a_failed_switch_or_with_prune_off(world):
    deployed(world, "1.0")
    world.pruned, world.prunes = dict(PRUNED), []
    world.gate_fails = ("2.0",)
    _result, failed = run(world, version="2.0")
    assert failed is not None and world.prunes == []
    _result, failed = run(world, version="3.0", prune=False)
    assert failed is None and world.prunes == []


def test_check_mode_says_what_a_prune_would_remove_and_records_nothing(world):
    deployed(world, "1.0")
    world.pruned = {"containers": ["shop-api-7"], "images": ["shop/api:0.9"], "other": False}
    before = audit(world)
    result, failed = run(world, check_mode=True, version="1.0")
    assert failed is None and result["changed"]
    assert "prune: would remove shop-api-7 (container), shop/api:0.9" in result["changes"]
    assert audit(world) == before
