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


def run_argv(argv):
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return out.returncode, out.stdout, out.stderr


def test_a_new_content_is_validated_before_it_replaces_the_file(tmp_path):
    path = tmp_path / "daemon.json"
    check = "python3 -c 'import json, sys; json.load(open(sys.argv[1]))' %s"
    files = fs.FileSet(run=run_argv)
    changed, _ = files.run([dict(spec(path, '{"a": 1}\n', "0644"), validate=check)])
    assert changed and state(path) == (b'{"a": 1}\n', 0o644)
    # A content the command refuses: the old file stays, the error names the file and the command's words.
    with pytest.raises(fs.FileSetError, match=r"(?s)daemon.json was not changed: its new content failed .*JSONDecodeError"):
        files.run([dict(spec(path, "{broken", "0644"), validate=check)])
    assert state(path) == (b'{"a": 1}\n', 0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]  # no temporary file left
    # Unchanged content, or check mode: nothing to validate, nothing run.
    calls = []
    fs.FileSet(run=lambda argv: calls.append(argv) or (1, "", "no")).run([dict(spec(path, '{"a": 1}\n', "0644"), validate=check)])
    fs.FileSet(check_mode=True, run=lambda argv: calls.append(argv) or (1, "", "no")).run(
        [dict(spec(path, "{}", "0644"), validate=check)])
    assert calls == []


def test_a_validate_command_without_the_file_is_refused(tmp_path):
    with pytest.raises(fs.FileSetError, match="must contain %s"):
        fs.FileSet(run=run_argv).run([dict(spec(tmp_path / "a"), validate="true")])
    assert not (tmp_path / "a").exists()


def test_absent_files_are_removed_and_a_directory_is_refused(tmp_path):
    (tmp_path / "old.list").write_text("deb x")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    changed, results = fs.FileSet().run([], absent=[str(tmp_path / "old.list"), str(tmp_path / "link"),
                                                     str(tmp_path / "never")])
    assert changed and [r["changes"] for r in results] == [["absent"], ["absent"], []]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not fs.FileSet().run([], absent=[str(tmp_path / "old.list")])[0]
    (tmp_path / "dir").mkdir()
    with pytest.raises(fs.FileSetError, match="is a directory"):
        fs.FileSet().run([], absent=[str(tmp_path / "dir")])
    (tmp_path / "keep").write_text("x")
    assert fs.FileSet(check_mode=True).run([], absent=[str(tmp_path / "keep")])[0] and (tmp_path / "keep").exists()


def test_directories_are_made_with_their_mode_before_the_files_in_them(tmp_path):
    target = tmp_path / "etc" / "docker"
    directory = {"path": str(target), "owner": str(UID), "group": str(GID), "mode": "0750"}
    changed, results = fs.FileSet().run([spec(target / "daemon.json", "{}", "0644")], directories=[directory])
    assert changed and results[0]["changes"] == ["directory", "owner", "group", "mode"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o750 and state(target / "daemon.json") == (b"{}", 0o644)
    os.chmod(target, 0o700)
    changed, results = fs.FileSet().run([], directories=[directory])
    assert changed and results[0]["changes"] == ["mode"] and stat.S_IMODE(os.stat(target).st_mode) == 0o750
    assert not fs.FileSet().run([], directories=[directory])[0]
    # Check mode: a new directory and its files are reported, nothing is made.
    new = dict(directory, path=str(tmp_path / "new"))
    changed, results = fs.FileSet(check_mode=True).run([spec(tmp_path / "new" / "f")], directories=[new])
    assert changed and not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(fs.FileSetError, match="is not a directory"):
        fs.FileSet().run([], directories=[dict(directory, path=str(tmp_path / "file"))])


def test_the_module_takes_directories_files_with_validate_and_absent(tmp_path):
    (tmp_path / "old").write_text("x")
    args = {"directories": [{"path": str(tmp_path / "d"), "mode": "0700", "owner": str(UID), "group": str(GID)}],
            "files": [dict(spec(tmp_path / "d" / "a", "one\n"), validate="test -s %s")],
            "absent": [str(tmp_path / "old")]}
    result = run_module(tmp_path, args, diff=True)
    assert result["changed"] and not result.get("failed"), result
    assert [f["changes"] for f in result["files"]] == [["directory", "owner", "group", "mode"],
                                                        ["content", "owner", "group", "mode"], ["absent"]]
    assert [d["after_header"] for d in result["diff"]] == [str(tmp_path / "d" / "a")]
    assert not run_module(tmp_path, args)["changed"]
