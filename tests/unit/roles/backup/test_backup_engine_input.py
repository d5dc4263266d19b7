"""backup_app_engine and, on a swarm, backup_swarm_manager are checked in the backup role's
`validate` entry point (before any change), naming the variable.

One ansible-playbook run (json callback, connection local): every case is a host of its own.
"""

import pytest
from validate_entry_point import run_validate

CASES = {
    "swarm-enabled": ({"backup_enabled": True, "app_engine": "swarm"}, None),
    "swarm-manager-named": ({"backup_enabled": True, "app_engine": "swarm", "app_swarm_manager": "compose-enabled"}, None),
    "swarm-manager-unknown": ({"backup_enabled": True, "app_engine": "swarm", "backup_swarm_manager": "mgr9"},
                              "backup_swarm_manager 'mgr9' is not a host of the inventory"),
    "swarm-manager-no-groups": ({"backup_enabled": True, "app_engine": "swarm", "backup_swarm_manager": "compose-enabled"},
                                None),
    "engine-unknown": ({"backup_enabled": True, "app_engine": "nomad"},
                       "backup_app_engine (from app_engine) is 'nomad': use compose or swarm"),
    "engine-unknown-disabled": ({"app_engine": "nomad"}, None),
    "compose-enabled": ({"backup_enabled": True}, None),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    inventory = {"all": {"hosts": {name: value for name, (value, _) in CASES.items()}}}
    return run_validate(tmp_path_factory.mktemp("backup-engine"), "backup", inventory)[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_engine_and_the_swarm_manager_are_checked(results, case):
    message = CASES[case][1]
    assert (case in results) == bool(message), results.get(case)
    if message:
        assert message in results[case]
