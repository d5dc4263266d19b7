"""The proxy role's files as its tasks would write them (selfhost.stack.file_set, one call per
step): which directories, files and removals each proxy_tls_mode asks for, the private key's
call that shows nothing, and the host's key check done once per run.

One ansible-playbook run (--check --diff, json callback, connection local): every case is a
host of its own; the role only reads this machine.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]

HELPER = "/usr/local/sbin/selfhost-tls-demo"
DROPIN = "/etc/systemd/system/certbot.service.d/selfhost-demo.conf"
CA_FILE = "/etc/letsencrypt/selfhost-demo-acme-ca.pem"
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
HAPROXY = {"proxy_server": "haproxy", "proxy_tls_dir": "/etc/haproxy/tls", "proxy_tls_bundle": "/etc/haproxy/tls/haproxy.pem",
           "proxy_reload_command": ["/usr/local/sbin/selfhost-lb", "reload"]}
CASES = {
    # Trailing blank lines in the input: the file ends with exactly one newline.
    "acme-nginx-private-ca": {"proxy_tls_mode": "acme", "proxy_acme_ca_bundle": CA + "\n\n"},
    "acme-haproxy": {"proxy_tls_mode": "acme", **HAPROXY},
    "selfsigned": {"proxy_tls_mode": "selfsigned"},
}
FILES_TASK = "Write the certificate directory, the TLS helper and certbot's files"

PLAYBOOK = """
- name: The files of each mode
  hosts: files
  gather_facts: false
  tasks:
    - name: Run the role's file tasks
      ansible.builtin.include_role:
        name: selfhost.stack.proxy
        tasks_from: files.yml

- name: A provided certificate
  hosts: provided
  gather_facts: false
  tasks:
    - name: The validate entry point, as playbooks/deploy.yml runs it first
      ansible.builtin.include_role:
        name: selfhost.stack.proxy
        tasks_from: validate

    - name: The role's own validation after it
      ansible.builtin.include_role:
        name: selfhost.stack.proxy
        tasks_from: validate

    - name: Install the provided certificate
      ansible.builtin.include_role:
        name: selfhost.stack.proxy
        tasks_from: certificate_provided.yml
"""


def key_and_certificate(work):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=app.example.com", "-keyout", str(work / "key.pem"),
                    "-out", str(work / "cert.pem")], check=True, capture_output=True)
    return (work / "key.pem").read_text(), (work / "cert.pem").read_text()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("proxy-files")
    key, cert = key_and_certificate(work)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "app_project_dir": str(work / "project"), "proxy_domains": ["app.example.com"]}
    inventory = {"all": {"vars": local, "children": {
        "files": {"hosts": {f"case-{name}": extra for name, extra in CASES.items()}},
        "provided": {"hosts": {"case-provided": {"proxy_tls_mode": "provided", "proxy_tls_certificate": cert,
                                            "proxy_tls_private_key": key}}}}}}
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (work / "playbook.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(work / "tmp"))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "--check", "--diff",
                           "-i", str(work / "hosts.yml"), str(work / "playbook.yml")],
                          env=env, cwd=work, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return work, proc.stdout, json.loads(proc.stdout)


def results(output, host, name):
    """Every result of the tasks called name on host, in the order they ran."""
    return [task["hosts"][host] for play in output["plays"] for task in play["tasks"]
            if task["task"]["name"] == "selfhost.stack.proxy : " + name and host in task["hosts"]]


def files_call(run, case):
    work, _, output = run
    (result,) = results(output, f"case-{case}", FILES_TASK)
    args = result["invocation"]["module_args"]
    return work, args, {f["path"]: f for f in args["files"]}, {d["after_header"]: d["after"] for d in result["diff"]}


def test_acme_with_nginx_and_a_private_ca(run):
    work, args, files, diffs = files_call(run, "acme-nginx-private-ca")
    assert [(d["path"], d["mode"]) for d in args["directories"]] == [
        (str(work / "project" / "tls"), "0700"), (str(work / "project" / "acme"), "0755"),
        ("/etc/systemd/system/certbot.service.d", "0755")]
    assert list(files) == [HELPER, CA_FILE, DROPIN]
    assert [files[p]["mode"] for p in files] == ["0755", "0644", "0644"]
    assert all((f["owner"], f["group"]) == ("0", "0") for f in files.values())
    assert files[CA_FILE]["content"] == CA + "\n"
    assert f"Environment=REQUESTS_CA_BUNDLE={CA_FILE}\n" in files[DROPIN]["content"]
    assert f"ExecStartPost={HELPER} verify --if-running\n" in files[DROPIN]["content"]
    # The package's cron job goes (certbot.timer renews); the CA file stays.
    assert args["absent"] == ["/etc/cron.d/certbot"]
    # --diff shows the helper as the template renders it.
    assert diffs[HELPER].startswith("#!/bin/sh\n# Ansible managed\n")


def test_acme_with_haproxy_has_no_webroot_and_drops_an_earlier_ca(run):
    _, args, files, _ = files_call(run, "acme-haproxy")
    assert [d["path"] for d in args["directories"]] == ["/etc/haproxy/tls", "/etc/systemd/system/certbot.service.d"]
    assert list(files) == [HELPER, DROPIN]
    assert "REQUESTS_CA_BUNDLE" not in files[DROPIN]["content"]
    assert args["absent"] == ["/etc/cron.d/certbot", CA_FILE]


def test_another_mode_removes_certbots_renewal_check(run):
    work, args, files, _ = files_call(run, "selfsigned")
    assert [d["path"] for d in args["directories"]] == [str(work / "project" / "tls")]
    assert list(files) == [HELPER]
    assert args["absent"] == [DROPIN]


def test_the_key_is_checked_on_the_host_once_per_run(run):
    _, _, output = run
    reads = results(output, "case-provided", "Read the public key of proxy_tls_certificate")
    checks = results(output, "case-provided", "Check that the private key belongs to the certificate")
    assert [r.get("skipped", False) for r in reads] == [False, True]
    assert [r.get("skipped", False) for r in checks] == [False, True]
    # The checks that read no host run every time.
    pem = results(output, "case-provided", "Check that proxy_tls_certificate and proxy_tls_private_key hold PEM")
    assert len(pem) == 2 and not any(r.get("skipped") for r in pem)


def test_the_private_key_is_never_shown(run):
    _, stdout, output = run
    (key,) = results(output, "case-provided", "Install the provided private key (root-only)")
    assert key["changed"] and "censored" in key and "diff" not in key
    (chain,) = results(output, "case-provided", "Install the provided certificate chain")
    assert chain["changed"] and "BEGIN CERTIFICATE" in chain["diff"][0]["after"]
    assert "PRIVATE KEY" not in stdout
