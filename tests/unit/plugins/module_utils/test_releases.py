"""Release history: recording, pruning, activation and the audit log on a real directory."""

import datetime
import json
import os

import pytest

from ansible_collections.selfhost.stack.plugins.module_utils import releases as rel

T0 = datetime.datetime(2026, 11, 22, 10, 0, 0, tzinfo=datetime.timezone.utc)


def at(minutes):
    return T0 + datetime.timedelta(minutes=minutes)


def deploy(project, version, minutes, keep=5):
    (project / "compose.yaml").write_text(f"services: {{backend: {{image: app:{version}}}}}\n")
    (project / ".env").write_text(f"APP_VERSION={version}\n")
    return rel.record(str(project), version, {"backend": f"app:{version}"}, "tester", keep, now=at(minutes))


@pytest.fixture()
def project(tmp_path):
    return tmp_path


def test_first_record_creates_release_and_current(project):
    changed, release_id, pruned = deploy(project, "v1", 0)
    assert changed and pruned == []
    assert release_id == "20261122T100000Z-v1"
    assert rel.current_release(str(project)) == release_id
    meta = rel.read_release(str(project), release_id)
    assert meta["version"] == "v1" and meta["previous"] is None and meta["deployed_by"] == "tester"
    assert (project / "releases" / release_id / "compose.yaml").read_text().endswith("app:v1}}\n")


def test_recording_unchanged_files_is_idempotent(project):
    deploy(project, "v1", 0)
    changed, release_id, _ = deploy(project, "v1", 5)
    assert not changed and release_id == "20261122T100000Z-v1"
    assert rel.list_releases(str(project)) == ["20261122T100000Z-v1"]


def test_previous_follows_the_chain(project):
    first = deploy(project, "v1", 0)[1]
    second = deploy(project, "v2", 1)[1]
    assert rel.current_release(str(project)) == second
    assert rel.previous_release(str(project)) == first


def test_prune_keeps_newest_and_never_current_or_previous(project):
    ids = [deploy(project, f"v{i}", i, keep=3)[1] for i in range(6)]
    assert rel.list_releases(str(project)) == list(reversed(ids[-3:]))
    # Roll back to an older release, then record more: current and its previous survive.
    rel.activate(str(project), ids[-3])
    assert rel.current_release(str(project)) == ids[-3]
    newest = deploy(project, "v9", 30, keep=2)[1]
    # The newest two, plus the previous release of the current one although it is older.
    assert rel.list_releases(str(project)) == [newest, ids[-1], ids[-3]]
    assert rel.previous_release(str(project)) == ids[-3]


def test_keep_below_two_is_refused(project):
    with pytest.raises(rel.ReleaseError, match="at least 2"):
        deploy(project, "v1", 0, keep=1)


def test_activate_restores_files_and_is_idempotent(project):
    first = deploy(project, "v1", 0)[1]
    deploy(project, "v2", 1)
    assert rel.activate(str(project), first) is True
    assert (project / ".env").read_text() == "APP_VERSION=v1\n"
    assert rel.current_release(str(project)) == first
    assert rel.activate(str(project), first) is False


def test_activate_unknown_release_names_the_known_ones(project):
    first = deploy(project, "v1", 0)[1]
    with pytest.raises(rel.ReleaseError, match=first):
        rel.activate(str(project), "20200101T000000Z-nope")


def test_audit_appends_json_lines(project):
    rel.audit(str(project), {"action": "deploy", "version": "v1"}, now=at(0))
    rel.audit(str(project), {"action": "rollback", "version": "v0"}, now=at(1))
    lines = [json.loads(line) for line in (project / "audit.log").read_text().splitlines()]
    assert [e["action"] for e in lines] == ["deploy", "rollback"]
    assert lines[0]["time"] == "2026-11-22T10:00:00Z"
    assert oct(os.stat(project / "audit.log").st_mode & 0o777) == "0o640"


def test_record_needs_the_live_files(project):
    with pytest.raises(rel.ReleaseError, match="compose.yaml"):
        rel.record(str(project), "v1", {}, "tester", 5)


def test_release_ids_sanitise_versions():
    assert rel.new_release_id("feature/x y", at(0)) == "20261122T100000Z-feature_x_y"
    assert rel.ID_PATTERN.match(rel.new_release_id("v1", at(0)))
