"""Backups of a stack on Docker Swarm are not built yet: backup_enabled on a swarm is refused in
the backup role's `validate` entry point (before any change), naming the variables.

One ansible-playbook run (json callback, connection local): every case is a host of its own.
"""

import pytest
from validate_entry_point import run_validate

CASES = {
    "swarm-enabled": ({"backup_enabled": True, "app_engine": "swarm"}, True),
    "swarm-disabled": ({"app_engine": "swarm"}, False),
    "compose-enabled": ({"backup_enabled": True}, False),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    inventory = {"all": {"hosts": {name: value for name, (value, _) in CASES.items()}}}
    return run_validate(tmp_path_factory.mktemp("backup-app-engine"), "backup", inventory)[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_backups_are_refused_only_for_a_stack_on_a_swarm(results, case):
    refused = CASES[case][1]
    assert (case in results) == refused, results.get(case)
    if refused:
        assert "backup_enabled is true, but the stack runs on Docker Swarm (backup_app_engine" in results[case]
