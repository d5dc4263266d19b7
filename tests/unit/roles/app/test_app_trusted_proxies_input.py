"""app_trusted_proxies is checked in the app role's `validate` entry point (before any change),
naming the variable and the entries Nginx would refuse in its geo block and set_real_ip_from.

One ansible-playbook run (json callback, connection local): every case is a host of its own.
"""

import pytest
from validate_entry_point import run_validate

BAD = {
    "host-name": (["lb.example.com", "10.0.0.0/24"], ["lb.example.com"]),
    "prefix-too-long": (["10.0.0.5/40"], ["10.0.0.5/40"]),
    "not-a-list": ("10.0.0.5", ["10.0.0.5"]),
}
GOOD = {
    "empty": [],
    "addresses-and-ranges": ["10.0.0.5", "10.0.1.0/24", "fd00::/64", "::1"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    hosts = {f"bad-{name}": {"app_trusted_proxies": value} for name, (value, _) in BAD.items()}
    hosts.update({f"good-{name}": {"app_trusted_proxies": value} for name, value in GOOD.items()})
    inventory = {"all": {"hosts": hosts, "vars": {"app_db_password": "unit-db", "app_redis_password": "unit-redis"}}}
    return run_validate(tmp_path_factory.mktemp("app-trusted-proxies"), "app", inventory)[0]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_entries_fail_naming_the_variable_and_the_entry(results, case):
    message = results.get(f"bad-{case}")
    assert message is not None, f"{case} was accepted"
    assert message.startswith("app_trusted_proxies must list"), message
    for text in BAD[case][1]:
        assert text in message, message


@pytest.mark.parametrize("case", sorted(GOOD))
def test_addresses_and_ranges_pass(results, case):
    assert f"good-{case}" not in results, results.get(f"good-{case}")
