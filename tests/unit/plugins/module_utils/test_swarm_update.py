"""Reading what became of a stack deploy (module_utils.swarm_update): `docker stack deploy`
exits 0 after a rollback, so the verdict comes from each service's UpdateStatus."""

from ansible_collections.selfhost.stack.plugins.module_utils import swarm_update as su


def service(name, state=None, message=""):
    inspected = {"Spec": {"Name": name}}
    if state is not None:
        inspected["UpdateStatus"] = {"State": state, "Message": message}
    return inspected


def test_an_unchanged_service_and_a_completed_update_are_done():
    assert su.verdicts([service("shop_web"), service("shop_api", "completed", "update completed")]) == {
        "shop_web": (su.DONE, ""), "shop_api": (su.DONE, "update completed")}


def test_a_rolled_back_update_is_a_failure_naming_the_service_and_swarms_reason():
    reason = "update rolled back due to failure or early termination of task abc"
    services = [service("shop_web", "completed"), service("shop_api", "rollback_completed", reason)]
    assert su.failures(services) == {"shop_api": reason}
    assert su.settled(services)


def test_a_rollback_in_progress_is_not_settled_and_not_yet_a_failure():
    services = [service("shop_api", "rollback_started", "update rolled back due to failure")]
    assert not su.settled(services)
    assert su.failures(services) == {}


def test_paused_updates_and_unknown_states_are_failures():
    services = [service("a", "paused", "update paused due to failure"), service("b", "rollback_paused"),
                service("c", "something_new")]
    assert sorted(su.failures(services)) == ["a", "b", "c"]


def test_a_changed_service_whose_update_has_not_started_is_pending_only_just_after_the_deploy():
    """A deploy resets UpdateStatus; Swarm's updater sets it moments later, or never when no
    task has to be replaced."""
    changed = {"Spec": {"Name": "shop_api", "TaskTemplate": {"ContainerSpec": {"Image": "api:v2"}}},
               "PreviousSpec": {"Name": "shop_api", "TaskTemplate": {"ContainerSpec": {"Image": "api:v1"}}}}
    scaled = {"Spec": {"Name": "shop_web", "TaskTemplate": {"x": 1}, "Mode": {"Replicated": {"Replicas": 3}}},
              "PreviousSpec": {"Name": "shop_web", "TaskTemplate": {"x": 1}, "Mode": {"Replicated": {"Replicas": 2}}}}
    assert su.outcome(changed, starting=True)[0] == su.PENDING
    assert su.outcome(changed)[0] == su.DONE
    assert su.outcome(scaled, starting=True)[0] == su.DONE
    assert su.outcome(service("shop_new"), starting=True)[0] == su.DONE
    assert not su.settled([changed], starting=True) and su.settled([changed])
