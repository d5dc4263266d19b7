"""The app role's helper scripts (roles/app/files), run with /bin/sh as the containers run them.

with-secrets reads /run/secrets/<name>, so it runs in a container of the harness's base image
(SELFHOST_BASE_IMAGE in .harness.env) with a temporary directory mounted there; probe and
postgres-start run on this machine. probe picks the first HTTP/TCP client it finds on PATH:
each client is forced by a PATH that holds only that client (and sh, head, cat).
"""

import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
FILES = ROOT / "roles/app/files"
SH = shutil.which("sh", path="/usr/bin:/bin")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def sh(script, *args, env=None, timeout=20):
    return subprocess.run([SH, str(FILES / script)] + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout)


def env_of(text):
    """The environment `env -0` printed."""
    return dict(item.split("=", 1) for item in text.split("\0") if item)


# -- with-secrets ---------------------------------------------------------------------------------


def base_image():
    image = os.environ.get("SELFHOST_BASE_IMAGE")
    harness = ROOT / ".harness.env"
    if not image and harness.exists():
        m = re.search(r"^(?:export\s+)?SELFHOST_BASE_IMAGE=['\"]?([^'\"\s]+)", harness.read_text(), re.M)
        image = m and m.group(1)
    return image


@pytest.fixture(scope="module")
def image():
    image = base_image()
    if not image:
        pytest.skip("SELFHOST_BASE_IMAGE is not set (.harness.env): no image to run with-secrets in")
    if not shutil.which("docker"):
        pytest.skip("docker is not installed: with-secrets reads /run/secrets and runs in a container")
    try:
        answer = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                                capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.skip("docker is not answering (docker image inspect timed out)")
    if answer.returncode != 0:
        pytest.skip("docker is not answering or the image %s is not here: %s" % (image, answer.stderr.strip()))
    return image


@pytest.fixture()
def secrets_dir(tmp_path):
    tmp_path.chmod(0o755)
    return tmp_path


def write_secret(directory, name, value, mode=0o444):
    path = directory / name
    path.write_bytes(value.encode())
    path.chmod(mode)
    return path


def with_secrets(image, secrets_dir, pairs, *command, user=None, env=None):
    argv = ["docker", "run", "--rm", "--network", "none", "-v", "%s:/run/secrets:ro" % secrets_dir,
            "-v", "%s:/selfhost:ro" % FILES]
    if user:
        argv += ["--user", user]
    if pairs is not None:
        argv += ["-e", "SELFHOST_SECRET_ENV=%s" % pairs]
    for key, value in (env or {}).items():
        argv += ["-e", "%s=%s" % (key, value)]
    argv += [image, "/bin/sh", "/selfhost/with-secrets"] + list(command)
    return subprocess.run(argv, capture_output=True, timeout=60)


VALUES = {
    "multi_line": "first line\nsecond line\n\tindented third",
    "spaces": "  leading, inner  spaces and trailing  ",
    "shell_text": "$HOME ${PATH} `id` $(id) 'single' \"double\" back\\slash \\n * ? ; | & > <",
    "looks_like_option": "-n",
    "equals": "a=b=c",
    "unicode": "caf\u00e9 \u2603",
}


def test_with_secrets_exports_each_value_exactly(image, secrets_dir):
    for name, value in VALUES.items():
        write_secret(secrets_dir, name, value)
    pairs = " ".join("%s=%s" % (name.upper(), name) for name in VALUES)
    run = with_secrets(image, secrets_dir, pairs, "env", "-0", env={"KEEP": "kept"})
    assert run.returncode == 0, run.stderr
    env = env_of(run.stdout.decode())
    for name, value in VALUES.items():
        assert env[name.upper()] == value, name
    assert "SELFHOST_SECRET_ENV" not in env
    assert env["KEEP"] == "kept"
    # Nothing of the values on the output besides the environment itself.
    assert run.stderr == b""


def test_with_secrets_drops_one_trailing_newline_like_command_substitution(image, secrets_dir):
    write_secret(secrets_dir, "pem", "-----BEGIN KEY-----\nAAAA\n-----END KEY-----\n")
    run = with_secrets(image, secrets_dir, "PEM=pem", "env", "-0")
    assert run.returncode == 0, run.stderr
    assert env_of(run.stdout.decode())["PEM"] == "-----BEGIN KEY-----\nAAAA\n-----END KEY-----"


def test_with_secrets_execs_the_command_with_its_arguments(image, secrets_dir):
    write_secret(secrets_dir, "token", "t0ken")
    run = with_secrets(image, secrets_dir, "TOKEN=token", "/bin/sh", "-c", 'printf "[%s]" "$$" "$TOKEN" "$@"', "sh",
                       "a b", "$x", "")
    assert run.returncode == 0, run.stderr
    # PID 1: the command replaced the wrapper (it gets the container's signals).
    assert run.stdout.decode() == "[1][t0ken][a b][$x][]"


def test_with_secrets_without_pairs_runs_the_command(image, secrets_dir):
    run = with_secrets(image, secrets_dir, None, "env", "-0")
    assert run.returncode == 0, run.stderr
    assert "SELFHOST_SECRET_ENV" not in env_of(run.stdout.decode())


def test_with_secrets_fails_on_a_missing_file(image, secrets_dir):
    write_secret(secrets_dir, "token", "t0ken")
    run = with_secrets(image, secrets_dir, "TOKEN=token MISSING=nope", "echo", "ran")
    assert run.returncode != 0
    assert b"/run/secrets/nope" in run.stderr
    assert b"ran" not in run.stdout


def test_with_secrets_fails_on_an_unreadable_file(image, secrets_dir):
    write_secret(secrets_dir, "token", "t0ken", mode=0o400)  # owned by root, as the role writes another uid's
    run = with_secrets(image, secrets_dir, "TOKEN=token", "echo", "ran", user="4242:4242")
    assert run.returncode != 0
    message = run.stderr.decode()
    assert "/run/secrets/token" in message and "4242" in message and "secrets_owner" in message
    assert b"ran" not in run.stdout and "t0ken" not in message


def test_with_secrets_without_a_command_fails_clearly(image, secrets_dir):
    write_secret(secrets_dir, "token", "t0ken")
    run = with_secrets(image, secrets_dir, "TOKEN=token")
    assert run.returncode != 0
    assert b"no command" in run.stderr


def test_with_secrets_on_this_machine_without_a_command():
    run = sh("with-secrets", env={"PATH": SYSTEM_PATH})
    assert run.returncode != 0 and "no command" in run.stderr


def test_with_secrets_on_this_machine_with_a_missing_file():
    name = "selfhost-unit-test-no-such-secret"
    assert not os.path.exists("/run/secrets/" + name)
    run = sh("with-secrets", "echo", "ran", env={"PATH": SYSTEM_PATH, "SELFHOST_SECRET_ENV": "X=" + name})
    assert run.returncode != 0 and "/run/secrets/" + name in run.stderr and "ran" not in run.stdout


# -- probe ----------------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    STATUS = {"/": 200, "/ok": 200, "/api/health": 204, "/redirect": 302, "/missing": 404, "/error": 500}

    def do_GET(self):
        status = self.STATUS.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        body = b"" if status == 204 else b"answer\n"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a tcp probe connects and closes without a request


@pytest.fixture(scope="module")
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NC_SHIM = '''#!%s
"""A stand-in for nc (none is installed here): nc -z -w N HOST PORT, nc -w N HOST PORT."""
import socket, sys
args = sys.argv[1:]
zero = "-z" in args
args = [a for a in args if a != "-z"]
wait = float(args[args.index("-w") + 1]) if "-w" in args else None
host, port = [a for i, a in enumerate(args) if a != "-w" and (i == 0 or args[i - 1] != "-w")][-2:]
try:
    s = socket.create_connection((host, int(port)), timeout=wait)
except OSError:
    sys.exit(1)
if zero:
    sys.exit(0)
s.sendall(sys.stdin.buffer.read())
while True:
    data = s.recv(65536)
    if not data:
        break
    sys.stdout.buffer.write(data)
'''

CLIENTS = ("curl", "wget", "python3", "node", "perl", "bash", "nc")


def real(tool):
    return shutil.which(tool, path=SYSTEM_PATH)


# The clients probe uses for a tcp check (python3, node, perl, bash, nc); curl and wget make no plain TCP connection.
TCP_CLIENTS = ("python3", "node", "perl", "bash", "nc")
_ONLY = {}


def only(tool, tmp_path_factory):
    """A PATH directory exposing only ``tool``, sh, head and cat (nc: a stand-in when none is installed)."""
    if tool not in _ONLY:
        directory = tmp_path_factory.mktemp("only-" + tool)
        for helper in ("sh", "head", "cat"):
            (directory / helper).symlink_to(real(helper))
        if real(tool):
            (directory / tool).symlink_to(real(tool))
        elif tool == "nc":
            shim = directory / "nc"
            shim.write_text(NC_SHIM % real("python3"))
            shim.chmod(0o755)
        else:
            directory = None
        _ONLY[tool] = directory
    if _ONLY[tool] is None:
        pytest.skip("%s is not installed here: probe's %s branch is not exercised" % (tool, tool))
    return tool, str(_ONLY[tool])


@pytest.fixture(scope="module", params=CLIENTS)
def client(request, tmp_path_factory):
    return only(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=TCP_CLIENTS)
def tcp_client(request, tmp_path_factory):
    return only(request.param, tmp_path_factory)


def probe(path_env, *args):
    return sh("probe", *args, env={"PATH": path_env}, timeout=30)


def test_only_the_forced_client_is_found(client):
    tool, path_env = client
    for other in CLIENTS:
        found = subprocess.run([SH, "-c", "command -v %s" % other], env={"PATH": path_env}, capture_output=True)
        assert (found.returncode == 0) == (other == tool), other


@pytest.mark.parametrize("path", ["/ok", "/api/health", "/redirect", None])
def test_probe_http_is_healthy_on_2xx_and_3xx(client, server, path):
    tool, path_env = client
    run = probe(path_env, "http", str(server), *([path] if path else []))
    assert run.returncode == 0, (tool, run.stderr)


@pytest.mark.parametrize("path", ["/missing", "/error"])
def test_probe_http_is_unhealthy_on_4xx_and_5xx(client, server, path):
    tool, path_env = client
    run = probe(path_env, "http", str(server), path)
    assert run.returncode != 0, tool


def test_probe_http_is_unhealthy_on_a_closed_port(client, closed_port):
    tool, path_env = client
    run = probe(path_env, "http", str(closed_port), "/ok")
    assert run.returncode != 0, tool


def test_probe_tcp(tcp_client, server, closed_port):
    tool, path_env = tcp_client
    run = probe(path_env, "tcp", str(server))
    assert run.returncode == 0, (tool, run.stderr)
    run = probe(path_env, "tcp", str(closed_port))
    assert run.returncode != 0, tool


def test_probe_without_any_client_says_what_it_needs(tmp_path, server):
    for helper in ("sh", "head", "cat"):
        (tmp_path / helper).symlink_to(real(helper))
    for kind in ("http", "tcp"):
        run = probe(str(tmp_path), kind, str(server), "/ok")
        assert run.returncode != 0
        assert "none of curl, wget, python3, node, perl, bash or nc" in run.stderr
        assert "healthcheck command" in run.stderr


def test_probe_prefers_the_first_client(server, tmp_path):
    """With every client there, curl answers (a fake curl that records its call)."""
    for helper in ("sh", "head", "cat", "wget", "python3", "perl", "bash"):
        if real(helper):
            (tmp_path / helper).symlink_to(real(helper))
    log = tmp_path / "curl.log"
    (tmp_path / "curl").write_text("#!%s\nprintf '%%s\\n' \"$@\" >%s\n" % (SH, log))
    (tmp_path / "curl").chmod(0o755)
    run = probe(str(tmp_path), "http", str(server), "/ok")
    assert run.returncode == 0, run.stderr
    assert log.read_text().split("\n")[-2] == "http://127.0.0.1:%d/ok" % server


# -- postgres-start -------------------------------------------------------------------------------

PG_ENV = {"PATH": SYSTEM_PATH, "POSTGRES_PASSWORD": "pg-Pa55word-0001", "POSTGRES_PASSWORD_FILE": "/run/secrets/db_password",
          "POSTGRES_USER": "shop", "POSTGRES_DB": "shop"}


def postgres_start(pgdata, *command):
    env = dict(PG_ENV, PGDATA=str(pgdata))
    return sh("postgres-start", *(command or ("env", "-0")), env=env)


def test_postgres_start_keeps_the_password_for_initdb(tmp_path):
    run = postgres_start(tmp_path)
    assert run.returncode == 0, run.stderr
    env = env_of(run.stdout)
    assert env["POSTGRES_PASSWORD"] == PG_ENV["POSTGRES_PASSWORD"]
    assert env["POSTGRES_PASSWORD_FILE"] == PG_ENV["POSTGRES_PASSWORD_FILE"]


def test_postgres_start_drops_the_password_once_the_cluster_exists(tmp_path):
    (tmp_path / "PG_VERSION").write_text("16\n")
    run = postgres_start(tmp_path)
    assert run.returncode == 0, run.stderr
    env = env_of(run.stdout)
    assert "POSTGRES_PASSWORD" not in env and "POSTGRES_PASSWORD_FILE" not in env
    assert (env["POSTGRES_USER"], env["POSTGRES_DB"], env["PGDATA"]) == ("shop", "shop", str(tmp_path))


def test_postgres_start_an_empty_pg_version_is_no_cluster(tmp_path):
    (tmp_path / "PG_VERSION").write_text("")
    assert "POSTGRES_PASSWORD" in env_of(postgres_start(tmp_path).stdout)


def test_postgres_start_execs_the_command_with_its_arguments(tmp_path):
    run = postgres_start(tmp_path, SH, "-c", 'printf "[%s]" "$@"', "sh", "a b", "$x", "")
    assert (run.returncode, run.stdout) == (0, "[a b][$x][]")
    run = postgres_start(tmp_path, SH, "-c", "exit 7")
    assert run.returncode == 7


def test_postgres_start_default_pgdata(image, tmp_path):
    """Without PGDATA the official images' default, /var/lib/postgresql/data."""
    tmp_path.chmod(0o755)
    (tmp_path / "PG_VERSION").write_text("17\n")
    argv = ["docker", "run", "--rm", "--network", "none", "-v", "%s:/var/lib/postgresql/data:ro" % tmp_path,
            "-v", "%s:/selfhost:ro" % FILES, "-e", "POSTGRES_PASSWORD=x", "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/db_password",
            image, "/bin/sh", "/selfhost/postgres-start", "env", "-0"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    env = env_of(run.stdout)
    assert "POSTGRES_PASSWORD" not in env and "POSTGRES_PASSWORD_FILE" not in env
