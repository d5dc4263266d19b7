"""HAProxy's runtime API client and the drain logic, against a fake admin socket that answers
like HAProxy 3.0 does (answers copied from a real one)."""

import os
import socket
import tempfile
import threading

import pytest

from ansible_collections.selfhost.stack.plugins.module_utils import haproxy_runtime as hr

HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
          "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
          "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
          "srv_check_addr srv_agent_addr srv_agent_port")
STAT_HEADER = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act"


class FakeHAProxy:
    """A Unix socket answering one command per connection, with servers' state in memory."""

    def __init__(self, servers, backend="app_hosts"):
        self.backend = backend
        # name: {"op": 0-3, "admin": bits, "sessions": int}
        self.servers = {n: {"op": 2, "admin": 0, "sessions": 0, **s} for n, s in servers.items()}
        self.commands = []
        self.on_stat = None  # called before each `show stat` answer (lets tests finish requests)
        self.closing = False
        self.dir = tempfile.mkdtemp(prefix="fake-haproxy-")
        self.path = os.path.join(self.dir, "admin.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.closing:
                conn.close()
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.decode().strip()
                self.commands.append(line)
                conn.sendall(self.answer(line).encode())

    def answer(self, line):
        words = line.split()
        if line.startswith("show servers state"):
            if len(words) == 4 and words[3] != self.backend:
                return "Can't find backend.\n\n"
            rows = ["3 %s %d %s 10.0.0.%d %d %d 1 1 5 15 3 3 6 0 0 0 - 80 - 0 0 - - 0"
                    % (self.backend, i, n, i, s["op"], s["admin"]) for i, (n, s) in enumerate(self.servers.items(), 1)]
            return "1\n" + HEADER + "\n" + "\n".join(rows) + "\n\n"
        if line == "show stat":
            if self.on_stat:
                self.on_stat(self)
            rows = ["f,FRONTEND,,,0,0,9984,0,0,0,0,0,0,,,,,OPEN,,"]
            rows += ["%s,%s,0,0,%d,0,,0,0,0,,0,,0,0,0,0,UP,1,1" % (self.backend, n, s["sessions"])
                     for n, s in self.servers.items()]
            rows.append("%s,BACKEND,0,0,0,0,999,0,0,0,0,0,,0,0,0,0,UP,2,2" % self.backend)
            return STAT_HEADER + "\n" + "\n".join(rows) + "\n\n"
        if len(words) == 5 and words[:2] == ["set", "server"] and words[3] == "state":
            backend, _, name = words[2].partition("/")
            if backend != self.backend:
                return "No such backend.\n\n"
            if name not in self.servers:
                return "No such server.\n\n"
            s = self.servers[name]
            if words[4] == "ready":
                s["admin"] &= ~(hr.ADMIN_FORCED_DRAIN | hr.ADMIN_FORCED_MAINT)
            elif words[4] == "drain":
                s["admin"] = (s["admin"] | hr.ADMIN_FORCED_DRAIN) & ~hr.ADMIN_FORCED_MAINT
            elif words[4] == "maint":
                s["admin"] |= hr.ADMIN_FORCED_MAINT
            return "\n"
        return "Unknown command: '%s'\n\n" % line

    def close(self):
        # The serving thread stops before the socket closes: a thread still in accept() when its
        # file descriptor is closed and reused would take another test's connections.
        self.closing = True
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
            wake.connect(self.path)
        self.thread.join(10)
        self.sock.close()


@pytest.fixture()
def haproxy():
    fakes = []

    def make(**servers):
        fake = FakeHAProxy(servers)
        fakes.append(fake)
        return fake
    yield make
    for fake in fakes:
        fake.close()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def pool_of(fake, clock=None):
    clock = clock or Clock()
    return hr.Pool(hr.RuntimeAPI(fake.path), fake.backend, clock=clock, sleep=clock.sleep)


def set_commands(fake):
    return [c for c in fake.commands if c.startswith("set ")]


def test_parse_real_show_servers_state():
    text = ("1\n" + HEADER + "\n"
            "3 app_hosts 1 app1 127.0.0.1 2 8 1 1 1 15 3 3 6 0 0 0 - 9001 - 0 0 - - 0\n"
            "3 app_hosts 2 app2 127.0.0.1 0 1 1 1 2 8 2 0 14 0 0 0 - 9002 - 0 0 - - 0\n"
            "4 other 1 x 127.0.0.1 2 0 1 1 2 8 2 0 14 0 0 0 - 9002 - 0 0 - - 0\n\n")
    servers = hr.parse_servers_state(text, "app_hosts")
    assert sorted(servers) == ["app1", "app2"]
    assert servers["app1"].describe() == {"address": "127.0.0.1", "admin": "drain", "health": "up"}
    assert servers["app1"].drained and not servers["app1"].ready and not servers["app1"].in_rotation
    assert servers["app2"].describe()["admin"] == "maint" and not servers["app2"].ready


def test_unknown_backend_is_an_error(haproxy):
    fake = haproxy(app1={})
    with pytest.raises(hr.HAProxyError, match="Can't find backend"):
        hr.RuntimeAPI(fake.path).servers("nope")


def test_missing_socket_is_an_error(tmp_path):
    with pytest.raises(hr.HAProxyError, match="cannot reach HAProxy's runtime API"):
        hr.RuntimeAPI(str(tmp_path / "none.sock")).servers("app_hosts")


def test_drain_one_server_waits_for_its_requests(haproxy):
    fake = haproxy(app1={"sessions": 2}, app2={})
    clock = Clock()

    def finish_one(f):
        f.servers["app1"]["sessions"] = max(0, f.servers["app1"]["sessions"] - 1)
    fake.on_stat = finish_one
    result = pool_of(fake, clock).apply(["app1"], drain_timeout=10)
    assert result["drained"] == ["app1"] and result["readied"] == []
    assert result["in_flight"] == {}
    assert 0 < result["waited_s"] < 1
    assert result["servers"]["app1"]["admin"] == "drain"
    assert result["servers"]["app2"]["admin"] == "ready"
    assert set_commands(fake) == ["set server app_hosts/app1 state drain"]


def test_undrain_readies_every_other_server_first(haproxy):
    fake = haproxy(app1={"admin": hr.ADMIN_FORCED_DRAIN}, app2={"admin": hr.ADMIN_FORCED_MAINT}, app3={})
    result = pool_of(fake).apply(["app3"])
    assert result["readied"] == ["app1", "app2"] and result["drained"] == ["app3"]
    assert set_commands(fake) == ["set server app_hosts/app1 state ready", "set server app_hosts/app2 state ready",
                                  "set server app_hosts/app3 state drain"]


def test_nothing_to_do_sends_no_command(haproxy):
    fake = haproxy(app1={"admin": hr.ADMIN_FORCED_DRAIN}, app2={})
    result = pool_of(fake).apply(["app1"])
    assert result["drained"] == result["readied"] == []
    assert set_commands(fake) == []


def test_check_mode_reports_and_changes_nothing(haproxy):
    fake = haproxy(app1={}, app2={"admin": hr.ADMIN_FORCED_DRAIN})
    result = pool_of(fake).apply(["app1"], check_mode=True)
    assert result["drained"] == ["app1"] and result["readied"] == ["app2"]
    assert set_commands(fake) == []
    # --diff shows each server's admin state before and after.
    assert result["diff"]["before"] == "app1 ready\napp2 drain\n"
    assert result["diff"]["after"] == "app1 drain\napp2 ready\n"


def test_diff_of_a_pool_left_as_it_is_shows_no_change(haproxy):
    fake = haproxy(app1={"admin": hr.ADMIN_FORCED_DRAIN}, app2={})
    diff = pool_of(fake).apply(["app1"])["diff"]
    assert diff["before"] == diff["after"] == "app1 drain\napp2 ready\n"


def test_a_server_in_maintenance_is_drained(haproxy):
    """HAProxy's `state drain` clears a forced maintenance (checked against HAProxy 2.6)."""
    fake = haproxy(app1={"admin": hr.ADMIN_FORCED_MAINT}, app2={})
    result = pool_of(fake).apply(["app1"])
    assert result["drained"] == ["app1"]
    assert result["diff"]["after"] == "app1 drain\napp2 ready\n"


def test_requests_still_in_flight_after_the_timeout_are_reported(haproxy):
    fake = haproxy(app1={"sessions": 3}, app2={})
    clock = Clock()
    result = pool_of(fake, clock).apply(["app1"], drain_timeout=2)
    assert result["in_flight"] == {"app1": 3}
    assert result["waited_s"] >= 2


def test_unknown_server_is_refused_before_any_change(haproxy):
    fake = haproxy(app1={}, app2={})
    with pytest.raises(hr.PoolError, match="no server app9"):
        pool_of(fake).apply(["app9"])
    assert set_commands(fake) == []


def test_drain_that_leaves_no_server_up_is_refused(haproxy):
    fake = haproxy(app1={}, app2={"op": 0})  # app2 is down by its health checks
    with pytest.raises(hr.PoolError, match="would leave no server of backend app_hosts taking requests.*app2 ready/down"):
        pool_of(fake).apply(["app1"])
    assert set_commands(fake) == []
    # A fleet of one app host has to drain it anyway: keep_serving=False.
    single = haproxy(app1={})
    assert pool_of(single).apply(["app1"], keep_serving=False)["drained"] == ["app1"]


def test_undrain_is_never_refused(haproxy):
    fake = haproxy(app1={"admin": hr.ADMIN_FORCED_DRAIN, "op": 0}, app2={"op": 0})
    assert pool_of(fake).apply([])["readied"] == ["app1"]
