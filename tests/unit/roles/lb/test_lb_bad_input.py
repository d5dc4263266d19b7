"""Bad input to the lb role fails in its `validate` entry point (which playbooks/deploy.yml runs
on the lb hosts before any change anywhere), with a message naming the variable.

One ansible-playbook run (json callback, connection local): every case is a host of its own.
"""

import pytest
from validate_entry_point import run_validate

CASES = {
    "backend-not-in-inventory": ({"lb_backends": ["web1", "ghost"]}, ["lb_backends", "ghost"]),
    "drained-not-a-backend": ({"lb_drained": ["web3"]}, ["lb_drained", "web3"]),
    "itself-a-backend": ({"lb_backends": ["web1", "case-itself-a-backend"]}, ["lb_backends", "not this load balancer"]),
    "port-out-of-range": ({"lb_https_port": 70000}, ["lb_https_port", "70000"]),
    "same-ports": ({"lb_https_port": 80}, ["lb_http_port, lb_https_port and lb_acme_http01_port must differ"]),
    "health-path": ({"lb_health_path": "api/health"}, ["lb_health_path", "api/health"]),
    "check-interval": ({"lb_check_interval_ms": 20}, ["lb_check_interval_ms", "20"]),
    "check-fall": ({"lb_check_fall": 0}, ["lb_check_fall"]),
    "backend-tls-without-ca": ({"lb_backend_tls": True}, ["lb_backend_ca"]),
    "extra-line-break": ({"lb_frontend_extra": ["acl a path /\nhttp-request deny"]}, ["lb_frontend_extra"]),
    "timeout-type": ({"lb_server_timeout": "soon"}, ["lb_server_timeout"]),
    # The app hosts' own settings: TLS of their own (they redirect the plain health checks), another port.
    "app-host-redirects": ({"lb_backends": ["web-tls"]}, ["lb_backend_tls is False", "web-tls", "proxy_tls_mode"]),
    "app-host-lacks-tls": ({"lb_backends": ["web1"], "lb_backend_tls": True, "lb_backend_port": 443,
                            "lb_backend_ca": "-----BEGIN CERTIFICATE-----"}, ["lb_backend_tls is True", "web1"]),
    "app-host-port": ({"lb_backends": ["web-8080"]}, ["8080", "lb_backend_port 80"]),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    hosts = {f"case-{name}": extra for name, (extra, _) in CASES.items()}
    hosts["case-good"] = {}
    inventory = {"all": {"children": {
        "lb": {"hosts": hosts}, "app": {"hosts": {"web1": {}, "web2": {"proxy_tls_mode": "none"}}},
        "elsewhere": {"hosts": {"web-tls": {"proxy_tls_mode": "acme"}, "web-8080": {"app_http_port": 8080}}}}}}
    return run_validate(tmp_path_factory.mktemp("lb-bad-input"), "lb", inventory, hosts="lb")


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_naming_the_variable(results, case):
    failures, _ = results
    message = failures.get(f"case-{case}")
    assert message is not None, f"{case} was accepted"
    for text in CASES[case][1]:
        assert text in message, message


def test_the_defaults_pass(results):
    failures, stats = results
    assert "case-good" not in failures, failures.get("case-good")
    assert stats["case-good"]["failures"] == 0
