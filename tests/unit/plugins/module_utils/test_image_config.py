"""How an image starts and which uid/gid it runs as (module_utils.image_config, module image_config)."""

import io
import json
import tarfile

import pytest

from ansible_collections.selfhost.stack.plugins.module_utils import image_config as ic
from ansible_collections.selfhost.stack.plugins.modules import image_config as module

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment line
app:x:1000:1001:App user:/app:/bin/sh
node:x:1000:1000:duplicate uid, listed later:/home/node:/bin/sh
nogroup-user:x:1500::no gid field:/:/bin/false
broken line without fields
bad:x:notanumber:0::/:/bin/false
redis:x:999:999::/data:/bin/false
"""
GROUP = """root:x:0:
staff:x:50:app,node
app:x:1001:
redis:x:999:
"""


def test_parse_table_reads_ids_and_primary_groups():
    users = ic.parse_table(PASSWD)
    assert users["root"] == (0, 0)
    assert users["app"] == (1000, 1001)
    assert users["redis"] == (999, 999)
    assert users["nogroup-user"] == (1500, None)
    assert "bad" not in users and "broken line without fields" not in users
    assert not [name for name in users if name.startswith("#")]


def test_parse_table_of_group_file_has_no_second_id():
    groups = ic.parse_table(GROUP)
    # The fourth field of /etc/group lists members, not an id.
    assert groups == {"root": (0, None), "staff": (50, None), "app": (1001, None), "redis": (999, None)}


def test_parse_table_first_entry_wins_and_empty_input():
    assert ic.parse_table("a:x:1:1\na:x:2:2\n") == {"a": (1, 1)}
    assert ic.parse_table("") == {} and ic.parse_table(None) == {}
    assert ic.parse_table("crlf:x:7:8\r\n") == {"crlf": (7, 8)}


@pytest.mark.parametrize("user", ["", "   ", None])
def test_empty_user_is_root(user):
    assert ic.resolve_user(user, PASSWD, GROUP) == (0, 0, None)


@pytest.mark.parametrize("user, expected", [
    ("1000", (1000, 1001)),       # a uid takes the primary group of its first passwd entry
    ("999", (999, 999)),
    ("4242", (4242, 4242)),       # a uid that is not in passwd: its gid is the uid
    ("1000:1000", (1000, 1000)),  # an explicit gid wins
    ("4242:0", (4242, 0)),
    ("app", (1000, 1001)),        # a name: uid and primary group from passwd
    ("redis", (999, 999)),
    ("nogroup-user", (1500, 1500)),
    ("app:staff", (1000, 50)),    # name:group, the group from /etc/group
    ("app:77", (1000, 77)),
    ("1000:staff", (1000, 50)),
    (" app ", (1000, 1001)),
])
def test_resolve_user(user, expected):
    assert ic.resolve_user(user, PASSWD, GROUP) == expected + (None,)


def test_resolve_user_needs_no_files_for_numeric_ids():
    assert ic.resolve_user("1000:1000") == (1000, 1000, None)
    assert ic.resolve_user("65532") == (65532, 65532, None)


def test_unknown_user_is_an_error_naming_it():
    uid, gid, error = ic.resolve_user("ghost", PASSWD, GROUP)
    assert (uid, gid) == (None, None)
    assert "ghost" in error and "/etc/passwd" in error
    # An image without /etc/passwd (scratch, distroless without one) knows no names.
    assert ic.resolve_user("app", "", "")[2] is not None


def test_unknown_group_is_an_error_naming_it():
    uid, gid, error = ic.resolve_user("app:wheel", PASSWD, GROUP)
    assert (uid, gid) == (None, None)
    assert "wheel" in error and "/etc/group" in error
    assert "wheel" in ic.resolve_user("1000:wheel", PASSWD, "")[2]


INSPECT = {
    "Id": "sha256:" + "0123456789ab" * 5 + "0123",
    "Config": {
        "User": "app",
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "OPTS=--a=1 --b=2", "EMPTY=", "NOEQUALS"],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["gunicorn", "app:app"],
        "Volumes": {"/var/lib/postgresql/data": {}, "/data": {}},
        "WorkingDir": "/app",
        "Labels": {"org.opencontainers.image.version": "1.4.2"},
    },
}


def test_summarize_takes_what_a_compose_service_depends_on():
    assert ic.summarize(INSPECT) == {
        "id": INSPECT["Id"],
        "entrypoint": ["docker-entrypoint.sh"],
        "cmd": ["gunicorn", "app:app"],
        "user": "app",
        "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "OPTS": "--a=1 --b=2", "EMPTY": ""},
        "volumes": ["/data", "/var/lib/postgresql/data"],
        "workdir": "/app",
    }


def test_summarize_of_an_image_that_sets_nothing():
    """docker image inspect gives null for an unset Entrypoint, Cmd, Env or Volumes."""
    empty = {"entrypoint": [], "cmd": [], "user": "", "env": {}, "volumes": [], "workdir": ""}
    nulls = {"Id": "sha256:1", "Config": {"User": "", "Env": None, "Entrypoint": None, "Cmd": None,
                                          "Volumes": None, "WorkingDir": ""}}
    assert ic.summarize(nulls) == dict(empty, id="sha256:1")
    assert ic.summarize({"Id": "sha256:2"}) == dict(empty, id="sha256:2")
    assert ic.summarize({"Id": "sha256:3", "Config": None}) == dict(empty, id="sha256:3")


def tar_of(*members):
    """A tar stream like `docker cp CONTAINER:/etc/passwd -` of (name, content or link target, file|dir|link)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = data
                tar.addfile(info)
    return out.getvalue()


def test_files_from_tar_reads_the_named_regular_files():
    data = tar_of(("passwd", PASSWD.encode(), "file"))
    assert ic.files_from_tar(data, ["passwd"]) == {"passwd": PASSWD}
    data = tar_of(("etc", None, "dir"), ("etc/group", GROUP.encode(), "file"), ("etc/shadow", b"secret", "file"))
    assert ic.files_from_tar(data, ["passwd", "group"]) == {"group": GROUP}


def test_files_from_tar_skips_directories_and_links():
    data = tar_of(("passwd", None, "dir"), ("group", "../usr/share/group", "link"))
    assert ic.files_from_tar(data, ["passwd", "group"]) == {}


def test_files_from_tar_survives_bytes_that_are_not_utf8():
    data = tar_of(("passwd", b"caf\xe9:x:1000:1000::/:/bin/sh\n", "file"))
    text = ic.files_from_tar(data, ["passwd"])["passwd"]
    assert text.endswith(":x:1000:1000::/:/bin/sh\n")
    assert ic.parse_table(text)["caf\ufffd"] == (1000, 1000)


def test_files_from_tar_of_an_empty_stream():
    assert ic.files_from_tar(tar_of(), ["passwd"]) == {}


# -- the module's image reader, with docker faked -----------------------------------------------


class Failed(Exception):
    pass


class FakeModule(object):
    """An AnsibleModule with run_command answering for a fake docker."""

    def __init__(self, images, files):
        self.images = images  # ref -> inspect dict
        self.files = files  # ref -> {"passwd": text, "group": text}
        self.calls = []
        self.created = {}

    def run_command(self, argv, binary_data=False, encoding="utf-8"):
        self.calls.append(argv)
        args = argv[1:]
        if args[:2] == ["image", "inspect"]:
            # As Docker: every image found (listed under its tags), rc 1 when one is missing.
            found = [dict(self.images[ref], RepoTags=[ref]) for ref in args[2:] if ref in self.images]
            return (0 if len(found) == len(args) - 2 else 1), json.dumps(found), "" if found else "No such image"
        if args[0] == "create":
            cid = "c%d" % len(self.created)
            self.created[cid] = args[-1]
            return 0, cid + "\n", ""
        if args[0] == "cp":
            cid, path = args[1].split(":", 1)
            name = path.rsplit("/", 1)[-1]
            text = self.files.get(self.created[cid], {}).get(name)
            if text is None:
                return 1, b"", b"Could not find the file"
            return 0, tar_of((name, text.encode(), "file")), b""
        if args[0] == "rm":
            self.created.pop(args[-1])
            return 0, "", ""
        raise AssertionError("unexpected docker call %r" % argv)

    def fail_json(self, **kwargs):
        raise Failed(kwargs["msg"])


def reader(user="app", files=True):
    inspect = dict(INSPECT, Config=dict(INSPECT["Config"], User=user))
    fake = FakeModule({"shop/api:1": inspect}, {"shop/api:1": {"passwd": PASSWD, "group": GROUP}} if files else {})
    return module.ImageReader(fake), fake


def test_reader_resolves_the_images_user_from_its_own_files():
    images, fake = reader("app")
    info = images.read("shop/api:1")
    assert (info["user"], info["uid"], info["gid"]) == ("app", 1000, 1001)
    assert info["entrypoint"] == ["docker-entrypoint.sh"] and info["cmd"] == ["gunicorn", "app:app"]
    # The container that carried the files out is removed; it is never started.
    assert fake.created == {}
    assert not [c for c in fake.calls if c[1] in ("start", "run", "exec")]
    create = next(c for c in fake.calls if c[1] == "create")
    assert create[2:4] == ["--entrypoint", "/nonexistent"]


def test_reader_takes_the_services_user_over_the_images():
    images, _fake = reader("app")
    info = images.read("shop/api:1", "redis:staff")
    assert (info["user"], info["uid"], info["gid"]) == ("redis:staff", 999, 50)


def test_reader_needs_no_container_for_numeric_users():
    images, fake = reader("1000:1000")
    assert (images.read("shop/api:1")["uid"], fake.calls[-1][1]) == (1000, "image")
    assert not [c for c in fake.calls if c[1] == "create"]
    images, fake = reader("")
    assert (images.read("shop/api:1")["uid"], images.read("shop/api:1")["gid"]) == (0, 0)
    assert not [c for c in fake.calls if c[1] == "create"]


def test_reader_of_a_bare_uid_looks_up_its_primary_group():
    images, _fake = reader("1000")
    assert images.read("shop/api:1")["gid"] == 1001


def test_reader_fails_on_a_name_the_image_does_not_know():
    images, fake = reader("ghost")
    with pytest.raises(Failed, match="shop/api:1: user 'ghost'"):
        images.read("shop/api:1")
    assert fake.created == {}
    # An image without /etc/passwd cannot resolve a name either.
    images, fake = reader("app", files=False)
    with pytest.raises(Failed, match="/etc/passwd"):
        images.read("shop/api:1")
    assert fake.created == {}


def test_reader_of_a_missing_image():
    images, _fake = reader()
    assert images.read("shop/missing:1") is None


# -- the module: pulling images and the cache of resolved users -------------------------------


class Exited(Exception):
    def __init__(self, result):
        super(Exited, self).__init__(result.get("msg", ""))
        self.result = result


class FakeAnsible(FakeModule):
    """The module's AnsibleModule: its params, check mode, and a docker whose registry holds
    `registry` (ref -> inspect); a pull of a ref it lacks fails with `pull_error`."""

    def __init__(self, params, images, files, registry=None, check_mode=False, pull_error=None):
        super(FakeAnsible, self).__init__(images, files)
        self.params = params
        self.check_mode = check_mode
        self.registry = registry or {}
        self.pull_error = pull_error

    def get_bin_path(self, name):
        return "/usr/bin/" + name

    def run_command(self, argv, binary_data=False, encoding="utf-8"):
        if argv[1] == "pull":
            self.calls.append(argv)
            ref = argv[-1]
            if ref not in self.registry:
                return 1, "", self.pull_error or "Error response from daemon: manifest for %s not found" % ref
            self.images[ref] = self.registry[ref]
            return 0, self.registry[ref]["Id"] + "\n", ""
        return super(FakeAnsible, self).run_command(argv, binary_data, encoding)

    def exit_json(self, **result):
        raise Exited(result)

    def fail_json(self, **result):
        raise Exited(dict(result, failed=True))

    def pulls(self):
        return [c[-1] for c in self.calls if c[1] == "pull"]

    def creates(self):
        return [c for c in self.calls if c[1] == "create"]


API_REF, OTHER_REF = "shop/api:1", "shop/other:2"
OTHER = dict(INSPECT, Id="sha256:" + "fe" * 32, Config=dict(INSPECT["Config"], User="redis"))
FILES = {API_REF: {"passwd": PASSWD, "group": GROUP}, OTHER_REF: {"passwd": PASSWD, "group": GROUP}}


def run_main(monkeypatch, tmp_path, images, local=(), registry=None, pull="never", check_mode=False, users=None,
             cache="default", pull_error=None):
    """module.main() with AnsibleModule replaced; (result, fake)."""
    params = {"images": list(images), "users": users or {}, "required": False, "pull": pull,
              "cache": str(tmp_path / "cache" / "image-users.json") if cache == "default" else cache}
    local = dict((ref, {API_REF: INSPECT, OTHER_REF: OTHER}[ref]) for ref in local)
    fake = FakeAnsible(params, local, FILES, registry, check_mode, pull_error)
    monkeypatch.setattr(module, "AnsibleModule", lambda **kwargs: fake)
    with pytest.raises(Exited) as done:
        module.main()
    return done.value.result, fake


def test_a_missing_image_is_pulled_then_read(monkeypatch, tmp_path):
    result, fake = run_main(monkeypatch, tmp_path, [API_REF], registry={API_REF: INSPECT}, pull="missing")
    assert not result.get("failed") and result["changed"]
    assert result["pulled"] == [API_REF] and result["missing"] == []
    assert (result["images"][API_REF]["uid"], result["images"][API_REF]["gid"]) == (1000, 1001)
    assert fake.pulls() == [API_REF]


def test_missing_pulls_only_what_is_not_here(monkeypatch, tmp_path):
    result, fake = run_main(monkeypatch, tmp_path, [API_REF, OTHER_REF], local=[API_REF],
                            registry={API_REF: INSPECT, OTHER_REF: OTHER}, pull="missing")
    assert fake.pulls() == [OTHER_REF] and result["pulled"] == [OTHER_REF]
    assert sorted(result["images"]) == [API_REF, OTHER_REF]


def test_always_pulls_every_image(monkeypatch, tmp_path):
    # The registry has a newer image under each tag.
    newer = {API_REF: dict(INSPECT, Id="sha256:" + "12" * 32), OTHER_REF: dict(OTHER, Id="sha256:" + "34" * 32)}
    result, fake = run_main(monkeypatch, tmp_path, [API_REF, OTHER_REF], local=[API_REF, OTHER_REF],
                            registry=newer, pull="always")
    assert fake.pulls() == [API_REF, OTHER_REF] and result["pulled"] == [API_REF, OTHER_REF] and result["changed"]
    assert sorted(result["images"]) == [API_REF, OTHER_REF]
    assert result["images"][API_REF]["id"] == newer[API_REF]["Id"]  # read after the pull


def test_always_reports_no_change_when_every_image_was_up_to_date(monkeypatch, tmp_path):
    result, fake = run_main(monkeypatch, tmp_path, [API_REF], local=[API_REF], registry={API_REF: INSPECT},
                            pull="always")
    assert fake.pulls() == [API_REF]
    assert not result["changed"]


def test_never_leaves_a_missing_image_missing(monkeypatch, tmp_path):
    result, fake = run_main(monkeypatch, tmp_path, [API_REF], registry={API_REF: INSPECT}, pull="never")
    assert not result.get("failed") and not result["changed"]
    assert result["missing"] == [API_REF] and result["images"] == {} and result["pulled"] == []
    assert fake.pulls() == []


def test_a_failed_pull_fails_naming_the_image_with_dockers_words(monkeypatch, tmp_path):
    words = "Error response from daemon: pull access denied for shop/api, repository does not exist"
    result, fake = run_main(monkeypatch, tmp_path, [API_REF], pull="missing", pull_error=words)
    assert result["failed"]
    assert result["msg"].startswith("docker pull %s failed (rc 1): " % API_REF) and words in result["msg"]
    assert fake.pulls() == [API_REF]


def test_every_image_that_failed_to_pull_is_named(monkeypatch, tmp_path):
    third = "shop/third:3"
    result, fake = run_main(monkeypatch, tmp_path, [API_REF, OTHER_REF, third], registry={OTHER_REF: OTHER},
                            pull="missing")
    assert result["failed"] and fake.pulls() == [API_REF, OTHER_REF, third]
    assert "docker pull %s failed" % API_REF in result["msg"] and "docker pull %s failed" % third in result["msg"]
    assert OTHER_REF not in result["msg"]
    assert result["pulled"] == [OTHER_REF] and sorted(result["images"]) == [OTHER_REF]


def test_check_mode_neither_pulls_nor_writes_the_cache(monkeypatch, tmp_path):
    result, fake = run_main(monkeypatch, tmp_path, [API_REF, OTHER_REF], local=[OTHER_REF],
                            registry={API_REF: INSPECT}, pull="missing", check_mode=True)
    assert fake.pulls() == [] and result["pulled"] == [] and not result["changed"]
    assert result["missing"] == [API_REF] and result["images"][OTHER_REF]["uid"] == 999
    assert not (tmp_path / "cache").exists()
    result, fake = run_main(monkeypatch, tmp_path, [API_REF], local=[API_REF], pull="always", check_mode=True)
    assert fake.pulls() == [] and not result["changed"] and not (tmp_path / "cache").exists()


def test_a_cached_user_resolution_creates_no_container(monkeypatch, tmp_path):
    first, fake = run_main(monkeypatch, tmp_path, [API_REF], local=[API_REF])
    assert len(fake.creates()) == 1
    cache = tmp_path / "cache" / "image-users.json"
    assert json.loads(cache.read_text()) == {INSPECT["Id"] + "|app": [1000, 1001]}
    again, fake = run_main(monkeypatch, tmp_path, [API_REF], local=[API_REF])
    assert fake.creates() == []
    assert again["images"] == first["images"]
    # Another user of the same image, or another image ID, is resolved from the image again.
    _result, fake = run_main(monkeypatch, tmp_path, [API_REF], local=[API_REF], users={API_REF: "redis:staff"})
    assert len(fake.creates()) == 1
    _result, fake = run_main(monkeypatch, tmp_path, [OTHER_REF], local=[OTHER_REF])
    assert len(fake.creates()) == 1
    assert sorted(json.loads(cache.read_text())) == sorted(
        [INSPECT["Id"] + "|app", INSPECT["Id"] + "|redis:staff", OTHER["Id"] + "|redis"])


def test_an_empty_cache_option_keeps_no_cache(monkeypatch, tmp_path):
    run_main(monkeypatch, tmp_path, [API_REF], local=[API_REF], cache="")
    _result, fake = run_main(monkeypatch, tmp_path, [API_REF], local=[API_REF], cache="")
    assert len(fake.creates()) == 1 and list(tmp_path.iterdir()) == []


def test_the_cache_file_is_written_0600(monkeypatch, tmp_path):
    run_main(monkeypatch, tmp_path, [API_REF], local=[API_REF])
    cache = tmp_path / "cache" / "image-users.json"
    assert oct(cache.stat().st_mode & 0o777) == oct(0o600)
    assert oct((tmp_path / "cache").stat().st_mode & 0o777) == oct(0o700)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["image-users.json"]  # no temporary file


def test_an_unreadable_cache_is_an_empty_one(tmp_path):
    bad = tmp_path / "image-users.json"
    bad.write_text("{not json")
    assert module.load_cache(str(bad)) == {} and module.load_cache(str(tmp_path / "none.json")) == {}
    bad.write_text("[1, 2]")
    assert module.load_cache(str(bad)) == {}
    module.save_cache(str(bad), {"sha256:1|app": [1, 2]})
    assert module.load_cache(str(bad)) == {"sha256:1|app": [1, 2]}


def test_every_image_on_the_host_is_inspected_in_one_call(monkeypatch, tmp_path):
    result, fake = run_main(monkeypatch, tmp_path, [API_REF, OTHER_REF], local=[API_REF, OTHER_REF])
    assert sorted(result["images"]) == [API_REF, OTHER_REF] and not result["missing"]
    assert [c[1:3] for c in fake.calls if c[1:3] == ["image", "inspect"]] == [["image", "inspect"]]


def test_by_reference_finds_an_image_under_any_spelling_of_its_name():
    inspected = [{"Id": "sha256:aa", "RepoTags": ["postgres:17"], "RepoDigests": []},
                 {"Id": "sha256:bb", "RepoTags": ["reg:5000/x/api:1"], "RepoDigests": ["reg:5000/x/api@sha256:" + "c" * 64]}]
    found = ic.by_reference(["docker.io/library/postgres:17", "reg:5000/x/api:1@sha256:" + "c" * 64, "sha256:aa",
                             "missing:1"], inspected)
    assert [(found[r] or {}).get("Id") for r in sorted(found)] == [
        "sha256:aa", None, "sha256:bb", "sha256:aa"]
