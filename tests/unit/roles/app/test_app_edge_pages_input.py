"""The edge's pages and maintenance settings are checked in the app role's `validate` entry
point (before any change): app_maintenance_allow goes into a geo block, the pages are read on
the controller, Retry-After is whole seconds. Each message names the variable.

One ansible-playbook run (json callback, connection local): every case is a host of its own.
"""

import pytest
from validate_entry_point import run_validate

BAD = {
    "allow-host-name": ({"app_maintenance_allow": ["office.example.com", "10.0.0.0/24"]},
                        ["app_maintenance_allow must list", "office.example.com"]),
    "allow-not-a-list": ({"app_maintenance_allow": "10.0.0.5"}, ["app_maintenance_allow must list", "10.0.0.5"]),
    "page-missing": ({"app_maintenance_page": "/nonexistent/maintenance.html"},
                     ["absolute path of an HTML file", "app_maintenance_page: /nonexistent/maintenance.html"]),
    "error-page-relative": ({"app_error_page": "pages/unavailable.html"},
                            ["absolute path of an HTML file", "app_error_page: pages/unavailable.html"]),
    "retry-after-words": ({"app_maintenance_retry_after": "soon"}, ["app_maintenance_retry_after", "soon"]),
    "retry-after-negative": ({"app_maintenance_retry_after": -5}, ["app_maintenance_retry_after must be whole seconds, got -5"]),
}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("pages") / "page.html"
    path.write_text("<h1>Back soon</h1>\n")
    return str(path)


@pytest.fixture(scope="module")
def results(tmp_path_factory, page):
    hosts = {f"bad-{name}": values for name, (values, _) in BAD.items()}
    hosts["good-all-set"] = {"app_maintenance_allow": ["10.0.0.5", "fd00::/64"], "app_maintenance_page": page,
                             "app_error_page": page, "app_maintenance_retry_after": 60}
    hosts["good-defaults"] = {}
    inventory = {"all": {"hosts": hosts, "vars": {"app_db_password": "unit-db", "app_redis_password": "unit-redis"}}}
    return run_validate(tmp_path_factory.mktemp("app-edge-pages"), "app", inventory)[0]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_fail_naming_the_variable(results, case):
    message = results.get(f"bad-{case}")
    assert message is not None, f"{case} was accepted"
    for text in BAD[case][1]:
        assert text in message, message


@pytest.mark.parametrize("case", ["all-set", "defaults"])
def test_good_values_pass(results, case):
    assert f"good-{case}" not in results, results.get(f"good-{case}")
