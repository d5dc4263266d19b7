"""The parts of one host's status (playbooks/status.yml), read from what Docker, the backup role,
openssl and the file system answer."""

import json
import os

from ansible_collections.selfhost.stack.plugins.module_utils import host_status as hs


def ps_line(service, state, status, image, oneoff="False", project="shop"):
    labels = ("com.docker.compose.project=%s,com.docker.compose.service=%s,com.docker.compose.oneoff=%s,"
              "org.opencontainers.image.description=a, b" % (project, service, oneoff))
    return json.dumps({"Labels": labels, "State": state, "Status": status, "Image": image})


def test_compose_services_count_running_and_serving_containers_and_their_tags():
    lines = [ps_line("backend", "running", "Up 2 hours (healthy)", "reg:5000/shop/backend:v2"),
             ps_line("backend", "running", "Up 3 seconds (health: starting)", "reg:5000/shop/backend:v3"),
             ps_line("worker", "running", "Up 2 hours", "reg:5000/shop/backend:v2"),
             ps_line("frontend", "exited", "Exited (0) 2 hours ago", "reg:5000/shop/frontend:v1"),
             ps_line("backend", "exited", "Exited (0) 1 minute ago", "reg:5000/shop/backend:v1", oneoff="True"), ""]
    assert hs.compose_services(lines) == {
        "backend": {"containers": 2, "running": 2, "serving": 1, "versions": ["v2", "v3"]},
        "worker": {"containers": 1, "running": 1, "serving": 1, "versions": ["v2"]},
        "frontend": {"containers": 1, "running": 0, "serving": 0, "versions": []},
    }


def test_labels_keep_a_value_with_a_comma():
    assert hs.labels_of("a=1,b=x, y,c=3") == {"a": "1", "b": "x, y", "c": "3"}


def test_a_tag_is_the_version_and_a_registry_port_is_not():
    assert hs.tag_of("reg:5000/shop/backend:v2") == "v2"
    assert hs.tag_of("reg:5000/shop/backend") == "reg:5000/shop/backend"
    assert hs.tag_of("shop/backend:1.4@sha256:" + "a" * 64) == "1.4"


def test_swarm_services_of_the_stack_only():
    lines = [json.dumps({"Name": "shop_backend", "Replicas": "1/2", "Image": "reg/shop/backend:v2"}),
             json.dumps({"Name": "shop_nginx", "Replicas": "1/1 (max 1 per node)", "Image": "nginx:1.26"}),
             json.dumps({"Name": "other_api", "Replicas": "3/3", "Image": "x:1"})]
    assert hs.swarm_services(lines, "shop") == {
        "backend": {"containers": 2, "running": 1, "serving": 1, "versions": ["v2"]},
        "nginx": {"containers": 1, "running": 1, "serving": 1, "versions": ["1.26"]}}


def test_the_backup_status_file_as_the_backup_role_writes_it():
    text = ("# HELP selfhost_backup_last_success_timestamp_seconds End of the last successful backup.\n"
            "# TYPE selfhost_backup_last_success_timestamp_seconds gauge\n"
            'selfhost_backup_last_success_timestamp_seconds{app="shop"} 1.7964e+09\n'
            'selfhost_backup_last_result{app="shop"} 0\n')
    assert hs.backup_status(text) == {"last_success": 1796400000, "ok": False}
    assert hs.backup_status('selfhost_backup_last_success_timestamp_seconds{app="shop"} 0\n'
                            'selfhost_backup_last_result{app="shop"} 1\n') == {"last_success": None, "ok": True}
    assert hs.backup_status(None) is None


def test_the_certificate_expiry_from_openssl():
    assert hs.certificate_expiry("notAfter=Mar  7 12:00:00 2027 GMT\n") == 1804420800
    assert hs.certificate_expiry("unable to load certificate") is None


def test_a_host_without_the_project_reads_without_asking_docker(tmp_path):
    asked = []

    def run(argv):
        asked.append(argv)
        return 0, "", ""
    status = hs.HostStatus(run, str(tmp_path / "none"), "shop", "compose", True, disk_path=str(tmp_path)).collect()
    assert asked == [] and status["services"] == {} and status["release"] is None and status["backup"] is None
    assert status["disk_free_bytes"] > 0 and 0 < status["disk_free_pct"] <= 100


def test_the_current_release_and_an_unanswering_docker(tmp_path):
    release = tmp_path / "releases" / "20261207T101500Z-v2"
    release.mkdir(parents=True)
    (release / "release.json").write_text(json.dumps({"version": "v2"}))
    os.symlink(release.name, str(tmp_path / "releases" / "current"))
    cert = tmp_path / "fullchain.pem"
    cert.write_text("PEM")

    def run(argv):
        if argv[0] == "openssl":
            return 0, "notAfter=Mar  7 12:00:00 2027 GMT\n", ""
        return 1, "", "Cannot connect to the Docker daemon"
    status = hs.HostStatus(run, str(tmp_path), "shop", "compose", True, certificates=[str(tmp_path / "no.pem"), str(cert)]
                           ).collect()
    assert (status["release"], status["version"]) == ("20261207T101500Z-v2", "v2")
    assert status["services"] is None and status["certificate_expires"] == 1804420800


def test_on_a_swarm_only_the_deploying_manager_lists_services(tmp_path):
    def run(argv):
        raise AssertionError("asked %s" % argv)
    assert hs.HostStatus(run, str(tmp_path), "shop", "swarm", False).services() == {}
