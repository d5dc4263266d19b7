"""The lb role's haproxy.cfg and the app role's Nginx site as Ansible renders them, for inputs
the fleet scenario does not take: IP addresses, several load balancers, no TLS, TLS to the
app hosts, another HTTPS port; and the app site with and without trusted load balancers.

The app site is nginx-site.conf.j2 with two routed services and the headers every route
includes (proxy_headers.inc.j2), rendered for app_trusted_proxies and app_trust_forwarded_proto.
One ansible-playbook run (connection local) renders every case into a temporary directory;
`haproxy -c` checks the files when this machine has haproxy.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
LB = ROOT / "roles" / "lb"
APP = ROOT / "roles" / "app"

CASES = {
    "acme-two-lbs": {"lb_tls_enabled": True, "lb_acme_challenge": True},
    "plain-http": {},
    "backend-tls": {"lb_tls_enabled": True, "lb_backend_tls": True, "lb_backend_port": 443,
                    "lb_backend_ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                    "lb_backend_tls_name": "app.example.com"},
    "other-https-port": {"lb_tls_enabled": True, "lb_https_port": 8443, "lb_hsts_max_age": 0,
                         "lb_frontend_extra": ["http-request deny if { path_beg /admin }"]},
    "named-backends": {"lb_tls_enabled": True},
}
APP_CASES = {
    "app-untrusted": {"app_trusted_proxies": []},
    "app-trusted": {"app_trusted_proxies": ["10.0.0.5", "10.0.1.0/24"]},
    "app-forwarded-proto": {"app_trusted_proxies": [], "app_trust_forwarded_proto": True},
    "app-trusted-and-forwarded-proto": {"app_trusted_proxies": ["10.0.0.5"], "app_trust_forwarded_proto": True},
    "app-swarm": {"app_trusted_proxies": [], "app_engine": "swarm"},
}
# What differs between the engines on the role's side: the role's own map (vars/main.yml), and
# __app_engine picked from it as the role does.
APP_ENGINES = yaml.safe_load((APP / "vars" / "main.yml").read_text())["__app_engines"]
# Two routed services, as the app role's vars would give them (app_model, app_plan).
APP_VARS = {"app_name": "demo", "app_project_dir": "/opt/demo", "app_engine": "compose", "app_tls_enabled": False,
            "app_domains": [], "app_https_port": 443, "app_client_max_body_size": "10m",
            "app_trust_forwarded_proto": False, "app_error_page": "", "app_maintenance_allow": [],
            "app_maintenance_retry_after": 300,
            "app_model_here": ["backend", "frontend"],
            "app_model": {"backend": {"routes": [{"path": "/api/", "websocket": False}]},
                          "frontend": {"routes": [{"path": "/", "websocket": False}]}},
            "app_plan": {"static": []},
            "__app_engines": APP_ENGINES, "__app_engine": "{{ __app_engines[app_engine] }}"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    work = tmp_path_factory.mktemp("render")
    inventory = {"all": {"children": {
        "lb": {"hosts": {"lb1": {"ansible_host": "10.0.0.5"}, "lb2": {"ansible_host": "10.0.0.6"}}},
        "app": {"hosts": {"web1": {"ansible_host": "10.0.1.11"}, "web2": {"ansible_host": "10.0.1.12"}}},
        # Reached by name (lb_backend_address), in the case named-backends.
        "named": {"hosts": {"name1": {}, "name2": {}}}},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory))
    tasks, app_tasks = [], []
    for name, extra in CASES.items():
        if name == "named-backends":
            extra = dict(extra, lb_backends=["name1", "name2"])
        tasks.append({"name": name, "ansible.builtin.template": {
            "src": str(LB / "templates" / "haproxy.cfg.j2"), "dest": str(work / f"{name}.cfg"), "mode": "0644"},
            "vars": extra})
    for name, extra in APP_CASES.items():
        for template, suffix in (("nginx-site.conf.j2", "conf"), ("proxy_headers.inc.j2", "inc")):
            app_tasks.append({"name": f"{name} {template}", "ansible.builtin.template": {
                "src": str(APP / "templates" / template), "dest": str(work / f"{name}.{suffix}"), "mode": "0644"},
                "vars": dict(APP_VARS, **extra)})
    plays = [
        {"name": "Render", "hosts": "lb1", "gather_facts": False,
         "vars_files": [str(LB / "defaults" / "main.yml"), str(LB / "vars" / "main.yml")], "tasks": tasks},
        {"name": "Render the app site", "hosts": "lb1", "gather_facts": False, "tasks": app_tasks},
    ]
    (work / "render.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    (work / "host_vars").mkdir()
    for host in ("name1", "name2"):
        (work / "host_vars" / f"{host}.yml").write_text("lb_backend_address: '{{ inventory_hostname }}.internal'\n")
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    result = subprocess.run(["ansible-playbook", "-i", str(work / "hosts.yml"), str(work / "render.yml")],
                            cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {(p.stem if p.suffix != ".inc" else p.stem + ".inc"): p.read_text()
            for p in work.iterdir() if p.suffix in (".cfg", ".conf", ".inc")}


def lines(text):
    return [line.strip() for line in text.splitlines()]


def test_several_load_balancers_forward_challenges_to_each_other(rendered):
    cfg = lines(rendered["acme-two-lbs"])
    assert "use_backend acme_challenge if { path_beg /.well-known/acme-challenge/ }" in cfg
    backend = rendered["acme-two-lbs"].split("backend acme_challenge", 1)[1]
    assert "server lb1 127.0.0.1:8402" in backend  # this host's certbot (no facts here: its default)
    assert "server lb2 10.0.0.6:8402" in backend  # the other load balancer's
    assert "retries 1" in backend and "retry-on conn-failure 404" in backend


def test_app_hosts_by_address_have_checks_and_no_resolvers(rendered):
    text = rendered["acme-two-lbs"]
    assert "server web1 10.0.1.11:80\n" in text and "server web2 10.0.1.12:80\n" in text
    assert "resolvers system" not in text
    assert "default-server check inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2\n" in text
    assert "http-check send meth GET uri /api/health ver HTTP/1.1 hdr Host localhost" in text


def test_app_hosts_by_name_are_resolved_while_haproxy_runs(rendered):
    text = rendered["named-backends"]
    assert "server name1 name1.internal:80 resolvers system init-addr last,libc,none resolve-prefer ipv4" in text
    assert "resolvers system\n    parse-resolv-conf" in text
    # A failed lookup keeps the last address: the health checks, not DNS, take a host out.
    for status in ("nx", "refused", "timeout", "other"):
        assert f"hold {status} 1h" in lines(text)


def test_plain_http_forwards_client_and_scheme_and_has_no_https(rendered):
    text = rendered["plain-http"]
    assert "frontend https" not in text and "ssl-default-bind" not in text and "redirect" not in text
    http = text.split("frontend http", 1)[1].split("backend", 1)[0]
    assert "option forwardfor" in http and "http-request set-header X-Forwarded-Proto http" in http


def test_https_redirect_hsts_and_tls_versions(rendered):
    text = rendered["acme-two-lbs"]
    assert "ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets" in text
    assert "bind 0.0.0.0:443 ssl crt /etc/haproxy/tls/haproxy.pem alpn h2,http/1.1" in text
    assert 'http-response set-header Strict-Transport-Security "max-age=31536000"' in text
    assert "http-request redirect scheme https code 301 unless { path_beg /.well-known/acme-challenge/ }" in text
    other = rendered["other-https-port"]
    assert "http-request redirect location https://%[req.hdr(host),field(1,:)]:8443%[url] code 301" in other
    assert "Strict-Transport-Security" not in other and "acme_challenge" not in other
    https = other.split("frontend https", 1)[1]
    assert "http-request deny if { path_beg /admin }" in https


def test_tls_to_the_app_hosts_is_verified(rendered):
    text = rendered["backend-tls"]
    assert ("fall 2 rise 2 ssl verify required ca-file /etc/haproxy/selfhost-backend-ca.pem"
            " sni str(app.example.com) verifyhost app.example.com\n") in text
    assert "server web1 10.0.1.11:443" in text


def test_only_idempotent_requests_are_retried_after_they_reached_a_host(rendered):
    text = rendered["acme-two-lbs"]
    assert "retry-on conn-failure empty-response response-timeout" in text
    assert "http-request disable-l7-retry unless METH_GET || METH_OPTIONS" in text


def test_app_site_without_trusted_proxies_replaces_forwarded_headers(rendered):
    text, headers = rendered["app-untrusted"], rendered["app-untrusted.inc"]
    # No geo of trusted load balancers (the maintenance allow-list's geo is always there).
    assert "real_ip" not in text and "$app_from_trusted_proxy" not in text and "$app_forwarded" not in text + headers
    # Every route takes the headers.
    assert text.count("include /etc/nginx/conf.d/proxy_headers.inc;") == 2
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in lines(headers)
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in lines(headers)


def test_app_site_without_trusted_proxies_keeps_app_trust_forwarded_proto(rendered):
    text, headers = rendered["app-forwarded-proto"], rendered["app-forwarded-proto.inc"]
    assert "real_ip" not in text and "$app_forwarded" not in text + headers
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in lines(headers)
    assert "proxy_set_header X-Forwarded-Proto $selfhost_forwarded_proto;" in lines(headers)


def test_nginx_waits_for_a_container_to_accept_as_long_as_the_engine_wants(rendered):
    # Compose: a container that is gone refuses at once; Swarm: a lost task drops connections,
    # so the next one gets the request after 1 s.
    assert "proxy_connect_timeout 5s;" in lines(rendered["app-untrusted.inc"])
    assert "proxy_connect_timeout 1s;" in lines(rendered["app-swarm.inc"])
    assert "proxy_next_upstream error timeout http_502 http_503;" in lines(rendered["app-swarm.inc"])


def test_app_site_believes_trusted_load_balancers_only(rendered):
    for case in ("app-trusted", "app-trusted-and-forwarded-proto"):
        text, headers = rendered[case], rendered[case + ".inc"]
        for proxy in APP_CASES[case]["app_trusted_proxies"]:
            assert f"set_real_ip_from {proxy};" in text and f"    {proxy} 1;" in text
        assert "real_ip_header X-Forwarded-For;" in text
        assert text.count("include /etc/nginx/conf.d/proxy_headers.inc;") == 2
        # Only the trusted load balancers' scheme, whatever app_trust_forwarded_proto says.
        assert "proxy_set_header X-Forwarded-Proto $app_forwarded_proto;" in lines(headers), case
        assert "proxy_set_header X-Forwarded-For $app_forwarded_for;" in lines(headers), case
        # A trusted load balancer that sends no X-Forwarded-For (its health checks) is the client.
        assert '"1:" $realip_remote_addr;' in lines(text), case
        assert '"~^1:" "$http_x_forwarded_for, $realip_remote_addr";' in lines(text), case


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed on this machine")
@pytest.mark.parametrize("case", [c for c in CASES if c != "backend-tls"])
def test_haproxy_accepts_the_configuration(rendered, case, tmp_path):
    # The certificate and state paths do not exist here: point them at a throwaway pair.
    pem = tmp_path / "haproxy.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=t", "-keyout", str(tmp_path / "k"), "-out", str(tmp_path / "c")],
                   check=True, capture_output=True)
    pem.write_text((tmp_path / "c").read_text() + (tmp_path / "k").read_text())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(rendered[case].replace("/etc/haproxy/tls/haproxy.pem", str(pem))
                   .replace("chroot /var/lib/haproxy\n", "").replace("user haproxy\n", "").replace("group haproxy\n", ""))
    result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
