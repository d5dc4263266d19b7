"""roles/app/files/nginx-start: the edge's pools by address, with the real sh and getent."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "app" / "files" / "nginx-start"

POOLS = """# Managed by selfhost.stack
upstream backend_pool {
    server localhost:8000 max_fails=0;
    server no-such-container.invalid:8000 max_fails=0;
}

upstream frontend_pool {
    server also-missing.invalid:8080 max_fails=0;
}
"""


def render(pools):
    env = {"SELFHOST_NGINX_POOLS": str(pools), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["sh", str(SCRIPT), "--render"], env=env, capture_output=True, text=True, check=True,
                          timeout=30).stdout


@pytest.fixture()
def rendered(tmp_path):
    if not shutil.which("getent"):
        pytest.skip("getent is not installed")
    pools = tmp_path / "upstreams.pools"
    pools.write_text(POOLS)
    return render(pools)


def test_a_resolvable_container_is_written_by_address(rendered):
    address = subprocess.run(["getent", "hosts", "localhost"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    address = "[%s]" % address if ":" in address else address
    assert "    server %s:8000 max_fails=0; # localhost" % address in rendered.splitlines()


def test_a_container_that_does_not_resolve_is_left_out(rendered):
    assert "no-such-container.invalid:8000" not in rendered
    assert "    # no-such-container.invalid does not resolve: not running" in rendered.splitlines()


def test_a_pool_left_empty_gets_a_server_marked_down(rendered):
    frontend = rendered.split("upstream frontend_pool {")[1].split("}")[0]
    assert frontend.strip().splitlines()[-1].strip() == "server 127.0.0.1:9 down; # no container to send traffic to"
    backend = rendered.split("upstream backend_pool {")[1].split("}")[0]
    assert "down;" not in backend


def test_without_a_pools_file_only_the_header_is_written(tmp_path):
    out = render(tmp_path / "none")
    assert out.startswith("# Written by /selfhost/nginx-start") and "upstream" not in out


def test_a_lookup_that_fails_keeps_the_address_the_live_pools_have(tmp_path, monkeypatch):
    pools = tmp_path / "upstreams.pools"
    pools.write_text("upstream backend_pool {\n    server gone-for-a-moment.invalid:8000 max_fails=0;\n}\n")
    live = tmp_path / "live"
    live.mkdir()
    (live / "upstreams.conf").write_text(
        "upstream backend_pool {\n    server 10.9.8.7:8000 max_fails=0; # gone-for-a-moment.invalid\n}\n")
    env = {"SELFHOST_NGINX_POOLS": str(pools), "SELFHOST_NGINX_LIVE_DIR": str(live), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["sh", str(SCRIPT), "--render"], env=env, capture_output=True, text=True, check=True,
                         timeout=30).stdout
    assert "    server 10.9.8.7:8000 max_fails=0; # gone-for-a-moment.invalid" in out.splitlines()
    assert "down;" not in out


def test_every_address_a_name_had_is_kept_while_it_does_not_resolve(tmp_path):
    """A Swarm service name resolves to every task: all of them stay in the pool through a
    failed lookup, each once."""
    if not shutil.which("getent"):
        pytest.skip("getent is not installed")
    pools = tmp_path / "upstreams.pools"
    pools.write_text("upstream api_pool {\n    server api.invalid:8000 max_fails=0;\n}\n")
    live = tmp_path / "live"
    live.mkdir()
    (live / "upstreams.conf").write_text(
        "upstream api_pool {\n"
        "    server 10.0.1.7:8000 max_fails=0; # api.invalid\n"
        "    server 10.0.1.5:8000 max_fails=0; # api.invalid\n"
        "    server 10.0.1.5:8000 max_fails=0; # api.invalid\n"
        "    server 10.0.1.9:9000 max_fails=0; # api.invalid\n"
        "}\n")
    env = {"SELFHOST_NGINX_POOLS": str(pools), "SELFHOST_NGINX_LIVE_DIR": str(live), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["sh", str(SCRIPT), "--render"], env=env, capture_output=True, text=True, check=True,
                         timeout=30).stdout
    servers = [line.strip() for line in out.splitlines() if line.strip().startswith("server ")]
    assert servers == ["server 10.0.1.5:8000 max_fails=0; # api.invalid",
                       "server 10.0.1.7:8000 max_fails=0; # api.invalid"]
