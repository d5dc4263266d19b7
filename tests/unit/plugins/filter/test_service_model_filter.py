"""The selfhost.stack.service_model filter, called directly and through a real playbook."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.stack.plugins.filter.service_model import FilterModule, service_model

ROOT = Path(__file__).resolve().parents[4]
SECRETS = {"db_password": "pg-Pa55word-0001", "token": "api-Token-Value-9", "empty": ""}


def test_filter_is_registered():
    assert FilterModule().filters()["service_model"] is service_model


def test_returns_the_normalised_model():
    out = service_model({"web": {"image": "shop/web:1", "port": "8080", "routes": ["/"]}},
                        defaults={"replicas": 2}, secrets=SECRETS, data_services=["postgres"], project_dir="/opt/shop")
    web = out["web"]
    assert (web["port"], web["replicas"], web["rollout"], web["healthcheck"]["kind"]) == (8080, 2, "zero-downtime", "tcp")
    assert web["routes"] == [{"path": "/", "websocket": False}]


def test_raises_every_message_sorted_and_joined():
    services = {"web": {"image": "Shop/Web", "port": 0, "replicas": 0},
                "api": {"image": "api:1", "secrets": [{"name": "token", "env": "T", "file_env": "F"}, "empty"]}}
    with pytest.raises(AnsibleFilterError) as info:
        service_model(services, secrets=SECRETS, project_dir="/etc")
    message = info.value.message
    parts = message.split("; ")
    assert parts == sorted(parts) and len(parts) == 6, message
    assert [p.split(":")[0] for p in parts] == [
        "app_project_dir", "app_services.api.secrets[0]", "app_services.api.secrets[1].name",
        "app_services.web.image", "app_services.web.port", "app_services.web.replicas"]
    assert all(value not in message for value in ("pg-Pa55word-0001", "api-Token-Value-9"))


def test_names_and_paths_of_the_collection_are_refused():
    services = {"backend": {"image": "shop/backend:1", "migrations": [{"command": "migrate"}], "tmpfs": ["/run"],
                            "stop_grace_period": "1m"},
                "backend-migrate-1": {"image": "shop/tools:1", "volumes": [{"name": "redis_data", "path": "/data"}]}}
    with pytest.raises(AnsibleFilterError) as info:
        service_model(services, defaults={"stop_grace_period": "10s"})
    for field in ("app_services.backend-migrate-1", "app_services.backend-migrate-1.volumes[0].name",
                  "app_services.backend.tmpfs[0]"):
        assert field + ": " in info.value.message, info.value.message
    assert info.value.message.count("app_services.") == 3, info.value.message
    services["backend"]["tmpfs"] = ["/run/app"]
    services["backend-tools"] = services.pop("backend-migrate-1")
    services["backend-tools"]["volumes"][0]["name"] = "tools_data"
    out = service_model(services, defaults={"stop_grace_period": "10s"})
    assert (out["backend"]["stop_grace_period"], out["backend-tools"]["stop_grace_period"]) == ("1m", "10s")


def test_through_ansible(tmp_path):
    """The FQCN resolves, templated digit strings convert, and a bad model fails the task."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        """
- hosts: localhost
  gather_facts: false
  vars:
    port: 5000
    services:
      api:
        image: registry.example.com/shop/api:1.4.2
        port: "{{ port }}"
        replicas: "{{ '2' }}"
        routes: [/api/]
        secrets: [{name: token, env: TOKEN}]
    secrets: {token: api-Token-Value-9}
  tasks:
    - ansible.builtin.set_fact:
        model: "{{ services | selfhost.stack.service_model(secrets=secrets, project_dir='/opt/shop') }}"
    - ansible.builtin.assert:
        that:
          - model.api.port == 5000
          - model.api.replicas == 2
          - model.api.limits.cpus == '1.0'
          - "model.api.secrets == [{'name': 'token', 'env': 'TOKEN', 'file_env': None}]"
    - ansible.builtin.debug:
        msg: "{{ {'api': services.api | combine({'port': 0})} | selfhost.stack.service_model(secrets={'token': ''}) }}"
"""
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", str(playbook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = proc.stdout + proc.stderr
    assert "All assertions passed" in output, output
    assert proc.returncode != 0, output
    assert "app_services.api.port: must be an integer from 1 to 65535, got 0" in output, output
    assert "app_services.api.secrets[0].name: secret token has an empty value" in output, output
    assert "api-Token-Value-9" not in output, output
