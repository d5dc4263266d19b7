"""Several files to their content, owner, group and mode in one call (module_utils.file_set, module file_set)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.selfhost.stack.plugins.module_utils import file_set as fs

UID, GID = os.getuid(), os.getgid()


def spec(path, content="s3cret\n", mode="0400", owner=None, group=None):
    return {"path": str(path), "content": content, "owner": str(UID if owner is None else owner),
            "group": str(GID if group is None else group), "mode": mode}


def state(path):
    info = os.lstat(path)
    return Path(path).read_bytes(), stat.S_IMODE(info.st_mode)


def test_new_files_are_written_with_their_mode_and_reported_in_order(tmp_path):
    changed, results = fs.FileSet().run([spec(tmp_path / "a"), spec(tmp_path / "b", "two", "0755")])
    assert changed
    assert [(r["path"], r["changes"]) for r in results] == [
        (str(tmp_path / "a"), ["content", "owner", "group", "mode"]), (str(tmp_path / "b"), ["content", "owner", "group", "mode"])]
    assert state(tmp_path / "a") == (b"s3cret\n", 0o400)
    assert state(tmp_path / "b") == (b"two", 0o755)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary file left


def test_a_second_run_changes_nothing(tmp_path):
    files = [spec(tmp_path / "a"), spec(tmp_path / "b", "", "0644")]
    fs.FileSet().run(files)
    changed, results = fs.FileSet().run(files)
    assert not changed and [r["changes"] for r in results] == [[], []]


def test_a_changed_content_replaces_the_file_and_keeps_the_before_text_for_the_diff(tmp_path):
    path = tmp_path / "a"
    fs.FileSet().run([spec(path, "old")])
    inode = os.lstat(path).st_ino
    changed, (result,) = fs.FileSet().run([spec(path, "new")])
    assert changed and result["changes"] == ["content"]
    assert (result["before"], result["after"]) == ("old", "new")
    assert state(path) == (b"new", 0o400)
    assert os.lstat(path).st_ino != inode  # renamed over, not written in place


def test_a_wrong_mode_alone_is_changed_in_place(tmp_path):
    path = tmp_path / "a"
    fs.FileSet().run([spec(path)])
    os.chmod(path, 0o644)
    inode = os.lstat(path).st_ino
    changed, (result,) = fs.FileSet().run([spec(path)])
    assert changed and result["changes"] == ["mode"]
    assert state(path) == (b"s3cret\n", 0o400) and os.lstat(path).st_ino == inode


def test_check_mode_reports_and_writes_nothing(tmp_path):
    path = tmp_path / "a"
    fs.FileSet().run([spec(path, "old")])
    changed, results = fs.FileSet(check_mode=True).run([spec(path, "new", "0600"), spec(tmp_path / "b")])
    assert changed and [r["changes"] for r in results] == [["content", "mode"], ["content", "owner", "group", "mode"]]
    assert state(path) == (b"old", 0o400) and not (tmp_path / "b").exists()


def test_check_mode_reports_the_files_of_a_directory_an_earlier_task_would_create(tmp_path):
    changed, (result,) = fs.FileSet(check_mode=True).run([spec(tmp_path / "new-dir" / "a")])
    assert changed and result["changes"] == ["content", "owner", "group", "mode"]
    assert not (tmp_path / "new-dir").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_owner_and_group_by_number_and_by_name(tmp_path):
    fs.FileSet().run([spec(tmp_path / "a", owner="999", group="998"), spec(tmp_path / "b", owner="root", group="root")])
    assert (os.lstat(tmp_path / "a").st_uid, os.lstat(tmp_path / "a").st_gid) == (999, 998)
    assert (os.lstat(tmp_path / "b").st_uid, os.lstat(tmp_path / "b").st_gid) == (0, 0)


@pytest.mark.parametrize("bad, message", [
    ({"mode": "0999"}, "is not an octal mode"),
    ({"mode": "rw-r--r--"}, "is not an octal mode"),
    ({"owner": "no-such-user-here"}, "owner 'no-such-user-here' does not exist"),
    ({"group": "no-such-group-here"}, "group 'no-such-group-here' does not exist"),
])
def test_bad_values_fail_naming_them(tmp_path, bad, message):
    with pytest.raises(fs.FileSetError, match=message):
        fs.FileSet().run([{**spec(tmp_path / "a"), **bad}])
    assert not (tmp_path / "a").exists()


def test_a_missing_directory_a_relative_path_and_a_symlink_are_refused(tmp_path):
    with pytest.raises(fs.FileSetError, match="the directory of .* does not exist"):
        fs.FileSet().run([spec(tmp_path / "missing" / "a")])
    with pytest.raises(fs.FileSetError, match="is not an absolute path"):
        fs.FileSet().run([spec("relative/a")])
    (tmp_path / "target").write_text("kept")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(fs.FileSetError, match="is not a regular file"):
        fs.FileSet().run([spec(tmp_path / "link")])
    assert (tmp_path / "target").read_text() == "kept"


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fs.os, "replace", broken_replace)
    with pytest.raises(OSError):
        fs.FileSet().run([spec(tmp_path / "a")])
    assert list(tmp_path.iterdir()) == []


def run_module(tmp_path, args, check=False, diff=False):
    """The module as Ansible runs it: its arguments in a file, its result as JSON on stdout."""
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    argfile = tmp_path.parent / (tmp_path.name + "-args.json")
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    collections = Path(__file__).resolve().parents[4] / ".collections"
    out = subprocess.run([sys.executable, "-m", "ansible_collections.selfhost.stack.plugins.modules.file_set", str(argfile)],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(collections)), check=False)
    return json.loads(out.stdout)


def test_the_module_returns_each_file_and_a_diff_of_the_changed_contents(tmp_path):
    files = [spec(tmp_path / "a", "one\n"), spec(tmp_path / "b", "two\n", "0755")]
    result = run_module(tmp_path, {"files": files}, diff=True)
    assert result["changed"] and not result.get("failed")
    assert [f["path"] for f in result["files"]] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert result["diff"][0] == {"before_header": str(tmp_path / "a"), "after_header": str(tmp_path / "a"),
                                 "before": "", "after": "one\n"}
    again = run_module(tmp_path, {"files": files}, diff=True)
    assert not again["changed"] and again["diff"] == []


def test_the_module_fails_naming_the_file(tmp_path):
    result = run_module(tmp_path, {"files": [spec(tmp_path / "missing" / "a")]})
    assert result["failed"] and str(tmp_path / "missing" / "a") in result["msg"]
