"""The proxy role's description of the server it serves (proxy_server and the variables that go
with it) is checked in its `validate` entry point, with a message naming the variable.

One ansible-playbook run (json callback, connection local): every case is a host of its own.
"""

import pytest
from validate_entry_point import run_validate

HAPROXY = {"proxy_tls_mode": "acme", "proxy_domains": ["shop.example.com"], "proxy_server": "haproxy",
           "proxy_name": "shop-lb", "proxy_tls_dir": "/etc/haproxy/tls", "proxy_tls_bundle": "/etc/haproxy/tls/haproxy.pem",
           "proxy_reload_command": ["/usr/local/sbin/selfhost-lb", "reload"],
           "proxy_https_connect": "127.0.0.1:443", "proxy_http_connect": "127.0.0.1:80"}

CASES = {
    "unknown-server": ({"proxy_server": "traefik"}, ["proxy_server", "traefik"]),
    "haproxy-without-bundle": ({"proxy_tls_bundle": ""}, ["proxy_tls_bundle required with proxy_server haproxy"]),
    "relative-dir": ({"proxy_tls_dir": "tls"}, ["proxy_tls_dir"]),
    "connect-without-port": ({"proxy_https_connect": "127.0.0.1"}, ["proxy_https_connect", "127.0.0.1"]),
    "empty-reload": ({"proxy_reload_command": []}, ["proxy_reload_command"]),
    "name-upper-case": ({"proxy_name": "Shop"}, ["proxy_name", "Shop"]),
    "port-out-of-range": ({"proxy_acme_http01_port": 0}, ["proxy_acme_http01_port"]),
}


@pytest.fixture(scope="module")
def failures(tmp_path_factory):
    hosts = {f"case-{name}": dict(HAPROXY, **extra) for name, (extra, _) in CASES.items()}
    hosts["case-good-haproxy"] = dict(HAPROXY)
    hosts["case-good-nginx"] = {"proxy_tls_mode": "acme", "proxy_domains": ["shop.example.com"]}
    return run_validate(tmp_path_factory.mktemp("proxy-input"), "proxy", {"all": {"hosts": hosts}})[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_server_description_fails_naming_the_variable(failures, case):
    message = failures.get(f"case-{case}")
    assert message is not None, f"{case} was accepted"
    for text in CASES[case][1]:
        assert text in message, message


def test_good_descriptions_pass(failures):
    assert "case-good-haproxy" not in failures and "case-good-nginx" not in failures, failures
