"""The example inventories (inventories/prod and inventories/staging) are models the app role's
`validate` entry point accepts, with the values of their vault.yml.example: documentation that
cannot drift from what the role takes.

One ansible-playbook run (json callback, connection local): each inventory's group_vars is a host.
"""

from pathlib import Path

import pytest
import yaml
from validate_entry_point import run_validate

ROOT = Path(__file__).resolve().parents[4]
INVENTORIES = ("prod", "staging")


def host_vars(name):
    group_vars = ROOT / "inventories" / name / "group_vars" / "all"
    values = yaml.safe_load((group_vars / "main.yml").read_text())
    values.update(yaml.safe_load((group_vars / "vault.yml.example").read_text()))
    return values


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    inventory = {"all": {"hosts": {name: host_vars(name) for name in INVENTORIES}}}
    return run_validate(tmp_path_factory.mktemp("example-inventories"), "app", inventory)


@pytest.mark.parametrize("name", INVENTORIES)
def test_the_example_inventory_is_a_model_the_role_takes(outcome, name):
    failures, stats = outcome
    assert name not in failures, failures[name]
    assert stats[name]["ok"] > 0 and stats[name]["failures"] == 0, stats[name]


@pytest.mark.parametrize("name", INVENTORIES)
def test_every_secret_the_model_names_is_in_the_vault_example(name):
    values = host_vars(name)
    named = {s["name"] for service in values["app_services"].values() for s in service.get("secrets", [])}
    builtin = {"database_url", "redis_url"}  # the collection makes these from app_db_password, app_redis_password
    assert named - builtin <= set(values.get("app_secrets", {})), named
