"""The Swarm stack of a rendered Compose project (module_utils.stack_render): what
`docker stack deploy` would do with it, checked against the docker CLI's own loader
(`docker stack config`, the same schema and conversion, no swarm needed)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.selfhost.stack.plugins.module_utils import stack_render as st
from ansible_collections.selfhost.stack.plugins.module_utils.compose_render import RenderError

sys.path.insert(0, os.path.dirname(__file__))
import test_compose_render as fixtures  # noqa: E402

HASH = "0123456789abcdef" * 4
SECRETS_HASH = "fedcba9876543210" * 4


def images(doc):
    """The .env variables of the compose project, as the role writes them, and the keyed hash of
    each service's secrets the switch adds (module_utils.app_switch)."""
    out = {"NGINX_IMAGE": fixtures.NGINX, "POSTGRES_IMAGE": fixtures.PG16, "REDIS_IMAGE": fixtures.REDIS}
    for name in fixtures.README_EXAMPLE:
        out[name.upper() + "_IMAGE"] = fixtures.README_EXAMPLE[name]["image"]
    out["API_MIGRATE_1_IMAGE"] = fixtures.README_EXAMPLE["api"]["image"]
    for name in doc["services"]:
        out[fixtures.cr.secrets_hash_var(name)] = SECRETS_HASH[:-len(name)] + name
    return out


def helper_configs(project_dir="/opt/shop"):
    return {"./selfhost": {name: {"key": "selfhost_" + name.replace("-", "_"), "sha256": HASH,
                                  "file": "%s/selfhost/%s" % (project_dir, name), "mode": 0o555}
                           for name in ("probe", "with-secrets", "nginx-start", "postgres-start")},
            "./nginx": {"default.conf": {"key": "nginx_default_conf", "sha256": HASH,
                                         "file": "/opt/shop/nginx/default.conf"}}}


def context(doc, **extra):
    ctx = {"stack": "shop", "images": images(doc), "routed": ["api", "web"], "singletons": ["nginx"],
           "secret_hashes": {key: HASH for key in doc.get("secrets", {})}, "configs": helper_configs(),
           "endpoint_mode": "dnsrr", "publish_mode": "host", "placement": {"postgres": ["node.labels.selfhost.data == true"]}}
    ctx.update(extra)
    return ctx


@pytest.fixture
def project():
    doc, _model = fixtures.example()
    return doc


def test_no_key_the_stack_schema_rejects_or_ignores(project):
    out = st.stack(project, context(project))
    assert "name" not in out
    assert "api-migrate-1" not in out["services"]  # migrations run as one-off jobs
    for name, spec in out["services"].items():
        for key in ("restart", "depends_on", "security_opt", "tmpfs", "shm_size", "profiles"):
            assert key not in spec, (name, key)
        assert "${" not in spec["image"], spec["image"]


def test_the_secrets_hash_label_is_the_value_the_switch_wrote_to_env(project):
    """The stack CLI reads no .env: the label's variable is resolved from it, so a changed
    secret is a changed service spec (a rolling update of that service only)."""
    env = images(project)
    out = st.stack(project, context(project))
    assert out["services"]["api"]["labels"] == {"selfhost.secrets-hash": env["API_SECRETS_HASH"]}
    assert "labels" not in out["services"]["web"] and "labels" not in out["services"]["postgres"]
    assert not [v for v in fixtures.interpolations(out["services"]["api"]) if "labels" in v[0]]
    env["API_SECRETS_HASH"] = "0" * 64
    again = st.stack(project, context(project, images=env))
    assert again["services"]["api"]["labels"] == {"selfhost.secrets-hash": "0" * 64}
    assert again["services"]["web"] == out["services"]["web"]
    # A .env without the variable (the switch did not write it) is refused, naming it.
    del env["API_SECRETS_HASH"]
    with pytest.raises(RenderError, match="API_SECRETS_HASH"):
        st.stack(project, context(project, images=env))


def test_other_labels_pass_unchanged():
    assert st.literal_labels({"a": "plain", "b": "${X}", "c": 3}, {"X": "resolved"}) == {
        "a": "plain", "b": "resolved", "c": 3}


def test_tmpfs_and_shared_memory_become_mounts(project):
    out = st.stack(project, context(project))
    pg = out["services"]["postgres"]
    targets = {m["target"]: m for m in pg["volumes"] if isinstance(m, dict)}
    assert targets["/dev/shm"]["tmpfs"]["size"] == 128 * 1024 ** 2
    assert {"/var/run/postgresql", "/tmp"} <= set(targets)


def test_bind_mounts_of_the_project_become_configs(project):
    out = st.stack(project, context(project))
    for name, spec in out["services"].items():
        assert not any(isinstance(v, str) and v.startswith("./") for v in spec.get("volumes", [])), name
    probe = [c for c in out["services"]["api"]["configs"] if c["target"] == "/selfhost/probe"]
    assert probe and probe[0]["mode"] == 0o555
    assert out["configs"]["selfhost_probe"]["name"] == "shop_selfhost_probe_" + HASH[:12]


def test_a_bind_mount_without_configs_is_refused(project):
    ctx = context(project, configs={})
    with pytest.raises(RenderError, match="not of every node"):
        st.stack(project, ctx)


def test_secrets_are_named_after_their_content(project):
    first = st.stack(project, context(project))
    key = sorted(first["secrets"])[0]
    changed = dict(context(project)["secret_hashes"], **{key: "f" * 64})
    second = st.stack(project, context(project, secret_hashes=changed))
    assert first["secrets"][key]["name"] != second["secrets"][key]["name"]
    assert second["secrets"][key]["name"].endswith("_" + "f" * 12)
    others = [k for k in first["secrets"] if k != key]
    assert all(first["secrets"][k] == second["secrets"][k] for k in others)
    assert all(len(s["name"]) <= 64 for s in first["secrets"].values())


def test_updates_start_first_for_routed_services_and_stop_first_for_the_rest(project):
    out = st.stack(project, context(project))
    orders = {name: spec["deploy"]["update_config"]["order"] for name, spec in out["services"].items()}
    assert orders == {"api": "start-first", "web": "start-first", "nginx": "stop-first", "postgres": "stop-first"}
    api = out["services"]["api"]["deploy"]
    assert api["update_config"]["failure_action"] == "rollback"
    assert api["rollback_config"]["failure_action"] == "pause"
    assert st.duration_seconds(api["update_config"]["monitor"]) >= 10


def test_ports_are_host_mode_and_a_local_address_is_refused(project):
    out = st.stack(project, context(project))
    assert {"target": 80, "published": 80, "protocol": "tcp", "mode": "host"} in out["services"]["nginx"]["ports"]
    doc, _ = fixtures.render(fixtures.README_EXAMPLE, publish="127.0.0.1")
    with pytest.raises(RenderError, match="127.0.0.1"):
        st.stack(doc, context(doc))


def test_stop_grace_period_of_the_application_services():
    """Swarm waits a task's stop_grace_period between SIGTERM and SIGKILL; the collection's own
    services keep Swarm's default, as before."""
    services = dict(fixtures.README_EXAMPLE, web=dict(fixtures.README_EXAMPLE["web"], stop_grace_period="1m30s"))
    doc, _ = fixtures.render(services, data_services=["postgres"], here=fixtures.host_services(services, redis=False))
    out = st.stack(doc, context(doc))
    grace = {name: spec.get("stop_grace_period") for name, spec in out["services"].items()}
    assert grace == {"api": "30s", "web": "1m30s", "nginx": None, "postgres": None}


def test_postgres_is_placed_on_the_labelled_node(project):
    out = st.stack(project, context(project))
    assert out["services"]["postgres"]["deploy"]["placement"]["constraints"] == ["node.labels.selfhost.data == true"]


def test_postgres_restarts_itself_after_initdb_and_may_signal_its_server(project):
    """No one restarts a swarm task after the cluster was created (the password would stay in
    the server's environment): postgres-start does, as root, which takes CAP_KILL."""
    pg = st.stack(project, context(project))["services"]["postgres"]
    assert pg["environment"]["SELFHOST_POSTGRES_RESTART_AFTER_INIT"] == "1"
    assert "KILL" in pg["cap_add"] and "ALL" in pg["cap_drop"]
    assert "POSTGRES_PASSWORD" not in pg["environment"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_the_docker_cli_loads_the_stack_unchanged(project, tmp_path):
    out = st.stack(project, context(project))
    for entry in list(out["secrets"].values()) + list(out["configs"].values()):
        path = tmp_path / os.path.basename(entry["file"])
        path.write_text("x")
        entry["file"] = str(path)
    (tmp_path / "stack.yml").write_text(yaml.safe_dump(out))
    run = subprocess.run(["docker", "stack", "config", "-c", str(tmp_path / "stack.yml")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "Ignoring" not in run.stderr and "ignoring" not in run.stderr, run.stderr
    loaded = yaml.safe_load(run.stdout)
    assert sorted(loaded["services"]) == sorted(out["services"])
    assert loaded["services"]["api"]["stop_grace_period"] == "30s"
    assert loaded["services"]["postgres"]["volumes"] and json.dumps(loaded)
