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
