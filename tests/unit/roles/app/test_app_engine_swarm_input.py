"""app_engine swarm: what the role does not deploy to a swarm yet, and app_swarm_placement, are
refused in the app role's `validate` entry point (before any change), naming the variable.

One ansible-playbook run (json callback, connection local): every case is a host of its own.
(A placement on a label no node carries needs a swarm: the swarm scenario checks it.)
"""

import pytest
from validate_entry_point import run_validate

SWARM = {"app_engine": "swarm", "app_migration_command": []}
BAD = {
    "migrations": ({"app_engine": "swarm"}, ["app_services.backend.migrations", "does not run migrations"]),
    "tls": (dict(SWARM, proxy_tls_mode="selfsigned"), ["TLS at the edge (proxy_tls_mode, set)"]),
    "placement-of-no-service": (dict(SWARM, app_swarm_placement={"cache": ["node.role == manager"]}),
                                ["app_swarm_placement must map services of the stack", '"cache"']),
    "placement-not-a-list": (dict(SWARM, app_swarm_placement={"postgres": "node.role == manager"}),
                             ["app_swarm_placement must map services", "node.role == manager"]),
    "engine": ({"app_engine": "kubernetes"}, ["app_engine", "kubernetes"]),
}
GOOD = {
    "swarm": SWARM,
    "swarm-placed": dict(SWARM, app_swarm_placement={"backend": ["node.role == worker"]}),
    "compose-with-migrations": {},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    hosts = {f"bad-{name}": value for name, (value, _) in BAD.items()}
    hosts.update({f"good-{name}": value for name, value in GOOD.items()})
    inventory = {"all": {"hosts": hosts, "vars": {"app_db_password": "unit-db", "app_redis_password": "unit-redis"}}}
    return run_validate(tmp_path_factory.mktemp("app-engine-swarm"), "app", inventory)[0]


@pytest.mark.parametrize("case", sorted(BAD))
def test_what_a_swarm_cannot_take_yet_is_refused_naming_the_variable(results, case):
    message = results.get(f"bad-{case}")
    assert message is not None, f"{case} was accepted"
    for text in BAD[case][1]:
        assert text in message, message


@pytest.mark.parametrize("case", sorted(GOOD))
def test_a_stack_the_role_can_deploy_passes(results, case):
    assert f"good-{case}" not in results, results.get(f"good-{case}")
