"""The Swarm engine of the switch (module_utils.engine_swarm): the checks it makes before any
change. A placement no node can satisfy would leave a task pending for ever; a rotated password
the stack cannot change in the running servers yet is refused."""

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.selfhost.stack.plugins.module_utils import app_switch as sw
from ansible_collections.selfhost.stack.plugins.module_utils.engine import SwitchFailed
from ansible_collections.selfhost.stack.plugins.module_utils.engine_swarm import SwarmEngine, missing_labels
from ansible_collections.selfhost.stack.plugins.modules import app_switch as module

SERVICES = ["api", "nginx", "postgres", "redis"]
NODES = [{"selfhost.data": "true", "zone": "eu-west.1"}, {"zone": "eu-west.2"}, None]


@pytest.mark.parametrize("constraint", [
    "node.labels.selfhost.data == true",
    "node.labels.selfhost.data==true",
    "node.labels.selfhost.data  ==  true",
    "node.labels.selfhost.data == true ",
])
def test_a_label_one_node_carries_satisfies_the_constraint(constraint):
    assert missing_labels({"postgres": [constraint]}, SERVICES, NODES) == []


def test_a_label_no_node_carries_is_missing():
    placement = {"postgres": ["node.labels.selfhost.data == true"], "api": ["node.labels.zone == eu-west.3"],
                 "redis": ["node.labels.selfhost.data == false"]}
    assert missing_labels(placement, SERVICES, NODES) == [
        ("api", "node.labels.zone == eu-west.3"), ("redis", "node.labels.selfhost.data == false")]


def test_each_constraint_of_a_service_is_checked():
    placement = {"api": ["node.labels.zone == eu-west.2", "node.labels.gpu == yes"]}
    assert missing_labels(placement, SERVICES, NODES) == [("api", "node.labels.gpu == yes")]
    # Both on one node is not asked for: each constraint alone.
    assert missing_labels({"api": ["node.labels.zone == eu-west.2", "node.labels.selfhost.data == true"]},
                          SERVICES, NODES) == []


@pytest.mark.parametrize("constraint", [
    "node.role == manager", "node.hostname == db1", "engine.labels.os == linux", "node.labels.gpu != yes",
    "node.platform.os == linux",
])
def test_constraints_on_other_things_than_node_labels_are_left_to_swarm(constraint):
    assert missing_labels({"api": [constraint]}, SERVICES, NODES) == []


def test_services_this_stack_does_not_run_are_ignored():
    assert missing_labels({"worker": ["node.labels.gpu == yes"]}, SERVICES, NODES) == []


def test_a_swarm_whose_nodes_carry_no_labels():
    assert missing_labels({"postgres": ["node.labels.selfhost.data == true"]}, SERVICES, [None, {}]) == [
        ("postgres", "node.labels.selfhost.data == true")]
    assert missing_labels({}, SERVICES, []) == []


# -- the engine's refusals, with its docker CLI faked ---------------------------------------------------


class FakeModule(object):
    check_mode = False

    def __init__(self, answers):
        self.answers = answers  # argv tail (joined) prefix -> (rc, out, err)
        self.calls = []

    def run_command(self, argv, cwd=None, **kwargs):
        line = " ".join(argv[1:])
        self.calls.append(line)
        for prefix, answer in self.answers.items():
            if line.startswith(prefix):
                return answer
        raise AssertionError("unexpected docker call %r" % line)

    def get_bin_path(self, name):
        return "/usr/bin/" + name


def engine(tmp_path, answers, **overrides):
    args = {"project_dir": str(tmp_path / "shop"), "name": "shop", "engine": "swarm", "services": SERVICES,
            "placement": {"postgres": ["node.labels.selfhost.data == true"], "worker": ["node.labels.gpu == yes"]}}
    args.update(overrides)
    p = ArgumentSpecValidator(module.argument_spec()).validate(args).validated_parameters
    project = sw.Project(p["project_dir"], False)
    project.ensure_directories([("secrets/postgres", 0o700), ("secrets/redis", 0o700)])
    return SwarmEngine(FakeModule(answers), p, project), project


SWARM = {"info --format": (0, "active true\n", ""), "node ls --quiet": (0, "n1\nn2\n", ""),
         "node inspect": (0, '{"selfhost.data":"true"}\nnull\n', "")}


def test_check_nodes_passes_when_a_node_carries_the_label(tmp_path):
    eng, _project = engine(tmp_path, SWARM)
    eng.check_nodes()
    assert eng.module.calls[-1] == "node inspect --format {{json .Spec.Labels}} n1 n2"


def test_check_nodes_refuses_a_placement_no_node_satisfies(tmp_path):
    answers = dict(SWARM, **{"node inspect": (0, '{"zone":"a"}\nnull\n', "")})
    eng, _project = engine(tmp_path, answers)
    with pytest.raises(SwitchFailed) as failed:
        eng.check_nodes()
    assert failed.value.details["before_change"]
    assert "app_swarm_placement places postgres on node.labels.selfhost.data == true" in failed.value.msg
    assert "worker" not in failed.value.msg  # not a service of this stack


def test_check_nodes_refuses_a_host_that_manages_no_swarm(tmp_path):
    eng, _project = engine(tmp_path, {"info --format": (0, "inactive false\n", "")})
    with pytest.raises(SwitchFailed, match=r"not a manager of an active swarm \(inactive false\)"):
        eng.check_nodes()


def test_a_rotated_password_is_refused_on_a_swarm(tmp_path):
    eng, project = engine(tmp_path, SWARM, db_password="new-db", redis_password="old-rd")
    project.write_files([{"path": "secrets/postgres/db_password", "content": "old-db", "mode": "0400"},
                         {"path": "secrets/redis/redis.conf", "content": 'dir /data\nrequirepass "old-rd"\n',
                          "mode": "0400"}], secret=True)
    eng.observe()
    with pytest.raises(SwitchFailed) as failed:
        eng.refuse_rotation()
    assert failed.value.details["before_change"]
    assert failed.value.msg.startswith("app_db_password differs from the password the running stack uses")
    same, _project = engine(tmp_path, SWARM, db_password="old-db", redis_password="old-rd")
    same.observe()
    same.refuse_rotation()


def test_update_batches_are_refused_on_a_swarm(tmp_path):
    eng, _project = engine(tmp_path, SWARM)
    with pytest.raises(SwitchFailed, match="playbooks/deploy.yml"):
        eng.preflight()


def test_the_pools_name_the_services_whose_tasks_nginx_finds(tmp_path):
    eng, _project = engine(tmp_path, SWARM, pools=[{"service": "api", "pool": "api_pool", "port": 8000}])
    (pools,) = eng.engine_files()
    assert pools["path"] == "nginx/upstreams.pools"
    assert "upstream api_pool {\n    server api:8000 max_fails=0;\n}\n" in pools["content"]
    no_edge, _project = engine(tmp_path, SWARM, services=["api", "postgres"])
    assert no_edge.engine_files() == []
