"""The I/O-free parts of the zero-downtime rollout: container state and upstream rendering."""

from ansible_collections.selfhost.stack.plugins.module_utils import rollout


def inspect(name, status="running", health="healthy", number="1"):
    state = {"Status": status}
    if health is not None:
        state["Health"] = {"Status": health}
    return {"Name": "/" + name, "State": state, "Config": {"Labels": {rollout.NUMBER_LABEL: number}}}


def test_container_from_inspect():
    c = rollout.Container.from_inspect(inspect("demo-backend-3", number="3"))
    assert (c.name, c.state, c.health, c.number) == ("demo-backend-3", "running", "healthy", 3)


def test_serving_needs_running_and_healthy_or_no_healthcheck():
    assert rollout.Container.from_inspect(inspect("a")).serving
    assert rollout.Container.from_inspect(inspect("a", health=None)).serving
    assert not rollout.Container.from_inspect(inspect("a", health="starting")).serving
    assert not rollout.Container.from_inspect(inspect("a", health="unhealthy")).serving
    assert not rollout.Container.from_inspect(inspect("a", status="exited", health=None)).serving


def test_render_upstreams_lists_every_container_sorted():
    text = rollout.render_upstreams([("backend_pool", 8000, ["demo-backend-4", "demo-backend-2"]),
                                     ("frontend_pool", 8080, ["demo-frontend-1"])])
    assert "upstream backend_pool {\n    server demo-backend-2:8000 max_fails=0;\n    server demo-backend-4:8000 max_fails=0;\n}" in text
    assert "upstream frontend_pool {\n    server demo-frontend-1:8080 max_fails=0;\n}" in text


def test_render_upstreams_is_stable():
    pools = [("backend_pool", 8000, ["b", "a"])]
    assert rollout.render_upstreams(pools) == rollout.render_upstreams([("backend_pool", 8000, ["a", "b"])])


def container(name, config_hash="h1", image_id="sha256:a", status="running", health="healthy"):
    return rollout.Container(name, status, health, 1, "backend", config_hash, image_id)


def test_parse_hashes_reads_service_and_hash_per_line():
    assert rollout.parse_hashes("backend 5e07b1\nnginx a389c6\n\n") == {"backend": "5e07b1", "nginx": "a389c6"}


def test_from_inspect_reads_the_compose_labels():
    data = inspect("demo-backend-1")
    data["Config"]["Labels"].update({rollout.SERVICE_LABEL: "backend", rollout.CONFIG_HASH_LABEL: "h1",
                                     rollout.IMAGE_LABEL: "sha256:a", rollout.ONEOFF_LABEL: "False"})
    c = rollout.Container.from_inspect(data)
    assert (c.service, c.config_hash, c.image_id, c.oneoff) == ("backend", "h1", "sha256:a", False)


def test_up_to_date_when_count_configuration_image_and_health_match():
    assert rollout.out_of_date([container("b-1"), container("b-2")], 2, "h1", "sha256:a") == ""


def test_out_of_date_names_the_first_difference():
    assert rollout.out_of_date([], 1, "h1", "sha256:a") == "no container"
    assert rollout.out_of_date([container("b-1")], 2, "h1", "sha256:a") == "1 containers, 2 wanted"
    assert rollout.out_of_date([container("b-1", config_hash="h0")], 1, "h1", "sha256:a") == "b-1 has another configuration"
    assert rollout.out_of_date([container("b-1", image_id="sha256:0")], 1, "h1", "sha256:a") == "b-1 runs another image"
    assert rollout.out_of_date([container("b-1", health="unhealthy")], 1, "h1", "sha256:a") == "b-1 is unhealthy"
    assert rollout.out_of_date([container("b-1", status="exited", health=None)], 1, "h1", "sha256:a") == "b-1 is exited"


def test_an_image_missing_on_the_host_means_out_of_date():
    assert rollout.out_of_date([container("b-1")], 1, "h1", None) == "b-1 runs another image"


def test_a_service_without_an_image_reference_is_judged_without_it():
    assert rollout.out_of_date([container("b-1", image_id="sha256:0")], 1, "h1", rollout.ANY_IMAGE) == ""


def test_leftovers_are_the_containers_never_started_or_dead():
    found = [rollout.Container("a-1", "running", "healthy"), rollout.Container("a-2", "created", None),
             rollout.Container("a-3", "exited", None), rollout.Container("a-4", "dead", None)]
    assert rollout.leftovers(found) == ["a-2", "a-4"]


def test_pool_members_prefer_serving_then_running_containers():
    healthy = rollout.Container("b-1", "running", "healthy")
    starting = rollout.Container("b-2", "running", "starting")
    stopped = rollout.Container("b-3", "exited", None)
    assert rollout.pool_members([healthy, starting, stopped]) == ["b-1"]
    assert rollout.pool_members([starting, stopped]) == ["b-2"]
    assert rollout.pool_members([stopped]) == []


def test_an_exec_the_runtime_could_not_start_may_be_tried_again():
    err = ("OCI runtime exec failed: exec failed: unable to start container process: waiting for init "
           "preliminary setup: read init-p: connection reset by peer: unknown")
    assert rollout.exec_never_started(126, err)
    # The command ran and failed, or could not be found: not tried again.
    assert not rollout.exec_never_started(1, "nginx: [emerg] unknown directive")
    assert not rollout.exec_never_started(127, "OCI runtime exec failed: exec: \"nginx\": executable file not found")
    assert not rollout.exec_never_started(126, "permission denied")


TCP_TABLE = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0000000000000000 100 0 0 10 0
   1: 0200120A:1F40 0500120A:D2A4 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0200120A:1F40 0500120A:D2A6 06 00000000:00000000 03:00000123 00000000     0        0 0 3 0000000000000000
   3: 0200120A:D2B0 0300120A:1F40 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 20 4 30 10 -1
"""


def test_open_connections_counts_the_established_ones_to_the_port():
    # 0x1F40 is 8000: one client connected (st 01); the listener (0A) and a TIME_WAIT (06) are not
    # requests; an outgoing connection *to* another 8000 is not one to this container.
    assert rollout.open_connections(TCP_TABLE, 8000) == 1
    assert rollout.open_connections(TCP_TABLE, 8080) == 0
    assert rollout.open_connections("", 8000) == 0
