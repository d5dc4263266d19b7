"""Backup retention (GFS): examples, bad policies and hypothesis properties."""

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.selfhost.stack.plugins.module_utils import backup_rotation as rot

UTC = datetime.timezone.utc


def name(stamp, prefix="demo", encrypted=False):
    when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return rot.backup_name(prefix, when, encrypted)


def test_backup_name_round_trip():
    when = datetime.datetime(2026, 11, 22, 2, 30, 5, tzinfo=UTC)
    assert rot.backup_name("demo", when) == "demo-20261122T023005Z.dump"
    assert rot.backup_name("demo", when, encrypted=True) == "demo-20261122T023005Z.dump.age"
    assert rot.parse_name("/var/backups/demo/demo-20261122T023005Z.dump.age") == ("demo", when, True)
    assert rot.parse_name("demo-20261122T023005Z.dump", prefix="demo") == ("demo", when, False)
    # Another app's backup, temporary files, checksums and impossible dates are not backups.
    for other in ("shop-20261122T023005Z.dump",):
        assert rot.parse_name(other, prefix="demo") is None
    for junk in (".demo-20261122T023005Z.dump.partial", "demo-20261122T023005Z.dump.sha256",
                 "demo-20261322T023005Z.dump", "demo-20261122.dump", "notes.txt"):
        assert rot.parse_name(junk) is None


def test_gfs_example_keeps_exactly_the_policy():
    # Daily backups at 02:00 from 2026-09-01 to 2026-11-22 (83 days).
    start = datetime.datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
    names = [rot.backup_name("demo", start + datetime.timedelta(days=i)) for i in range(83)]
    result = rot.plan(names, keep_last=2, keep_daily=4, keep_weekly=3, keep_monthly=3)
    assert result["keep"] == [
        "demo-20261122T020000Z.dump",  # newest, last, daily, weekly (week 47, a Sunday), monthly
        "demo-20261121T020000Z.dump",  # last, daily
        "demo-20261120T020000Z.dump",  # daily
        "demo-20261119T020000Z.dump",  # daily
        "demo-20261115T020000Z.dump",  # weekly (Sunday of week 46)
        "demo-20261108T020000Z.dump",  # weekly (Sunday of week 45)
        "demo-20261031T020000Z.dump",  # monthly (October)
        "demo-20260930T020000Z.dump",  # monthly (September)
    ]
    assert result["reasons"]["demo-20261122T020000Z.dump"] == ["last", "daily", "weekly", "monthly", "newest", "newest-verified"]
    assert result["reasons"]["demo-20261108T020000Z.dump"] == ["weekly"]
    assert len(result["delete"]) == 83 - 8
    assert result["delete"][0] == "demo-20261118T020000Z.dump"
    assert result["delete"][-1] == "demo-20260901T020000Z.dump"


def test_newest_of_a_day_represents_it():
    names = [name("2026-11-22 01:00"), name("2026-11-22 13:00"), name("2026-11-21 23:59"), name("2026-11-21 00:01")]
    result = rot.plan(names, keep_daily=2)
    assert result["keep"] == [name("2026-11-22 13:00"), name("2026-11-21 23:59")]


def test_zero_counts_keep_only_newest_and_newest_verified():
    names = [(name("2026-11-22 02:00"), False), (name("2026-11-21 02:00"), True), (name("2026-11-20 02:00"), True)]
    result = rot.plan(names)
    assert result["keep"] == [name("2026-11-22 02:00"), name("2026-11-21 02:00")]
    assert result["reasons"][name("2026-11-21 02:00")] == ["newest-verified"]
    assert result["delete"] == [name("2026-11-20 02:00")]


def test_unverified_backups_do_not_protect_themselves():
    names = [(name("2026-11-22 02:00"), False), (name("2026-11-21 02:00"), False), (name("2026-11-20 02:00"), False)]
    assert rot.plan(names, keep_last=1)["delete"] == [name("2026-11-21 02:00"), name("2026-11-20 02:00")]


def test_other_files_are_neither_kept_nor_deleted():
    names = ["notes.txt", name("2026-11-22 02:00"), "demo-20261122T020000Z.dump.sha256", name("2026-11-21 02:00")]
    result = rot.plan(names, keep_last=1)
    assert result["keep"] == [name("2026-11-22 02:00")]
    assert result["delete"] == [name("2026-11-21 02:00")]


def test_empty_list():
    assert rot.plan([], keep_last=3) == {"keep": [], "delete": [], "reasons": {}}


@pytest.mark.parametrize("key", rot.POLICY_KEYS)
@pytest.mark.parametrize("bad", [-1, -100, "-1", "three", 1.5, None, True])
def test_bad_policy_is_rejected(key, bad):
    with pytest.raises(rot.RotationError, match=key + " must be an integer >= 0"):
        rot.plan([name("2026-11-22 02:00")], **{key: bad})


def test_numeric_strings_are_counts():
    # Extra vars (-e keep_daily=2) arrive as strings.
    assert rot.check_policy(keep_last="2", keep_daily=" 3 ") == {"keep_last": 2, "keep_daily": 3, "keep_weekly": 0, "keep_monthly": 0}


def test_duplicates_are_rejected():
    with pytest.raises(rot.RotationError, match="listed twice"):
        rot.plan([name("2026-11-22 02:00"), name("2026-11-22 02:00")])


# ---------------------------------------------------------------- properties

EPOCH = datetime.datetime(2024, 1, 1, tzinfo=UTC)
# Up to ~3 years of backups at second resolution, so days, weeks and months all repeat and vary.
stamps = st.lists(st.integers(min_value=0, max_value=3 * 366 * 86400), min_size=0, max_size=60, unique=True)
backup_sets = stamps.flatmap(
    lambda secs: st.lists(st.booleans(), min_size=len(secs), max_size=len(secs)).map(
        lambda flags: [(rot.backup_name("demo", EPOCH + datetime.timedelta(seconds=s)), f) for s, f in zip(secs, flags)]
    )
)
counts = st.integers(min_value=0, max_value=12)
policies = st.fixed_dictionaries({k: counts for k in rot.POLICY_KEYS})


def when(backup_name):
    return rot.parse_name(backup_name)[1]


def oracle(backups, policy):
    """An independent reading of the policy: group by period, newest per period, most recent periods."""
    newest_first = sorted(backups, key=lambda b: when(b[0]), reverse=True)
    keep = {n for n, _ in newest_first[:policy["keep_last"]]}
    selections = {}
    for kind, key in (("daily", lambda t: t.strftime("%Y-%m-%d")),
                      ("weekly", lambda t: "%d-W%02d" % t.isocalendar()[:2]),
                      ("monthly", lambda t: t.strftime("%Y-%m"))):
        best = {}
        for n, _ in backups:
            period = key(when(n))
            if period not in best or when(n) > when(best[period]):
                best[period] = n
        recent = sorted(best, key=lambda p: when(best[p]), reverse=True)[:policy["keep_" + kind]]
        selections[kind] = {best[p] for p in recent}
        keep |= selections[kind]
    if newest_first:
        keep.add(newest_first[0][0])
        verified = [n for n, v in newest_first if v]
        if verified:
            keep.add(verified[0])
    return keep, selections


@settings(max_examples=300, deadline=None)
@given(backup_sets, policies)
def test_never_deletes_the_newest_or_the_newest_verified(backups, policy):
    result = rot.plan(backups, **policy)
    if backups:
        newest = max(backups, key=lambda b: when(b[0]))[0]
        assert newest in result["keep"] and newest not in result["delete"]
    verified = [n for n, v in backups if v]
    if verified:
        assert max(verified, key=when) not in result["delete"]


@settings(max_examples=300, deadline=None)
@given(backup_sets, policies)
def test_pruning_the_kept_set_again_deletes_nothing(backups, policy):
    result = rot.plan(backups, **policy)
    flags = dict(backups)
    again = rot.plan([(n, flags[n]) for n in result["keep"]], **policy)
    assert again["delete"] == []
    assert again["keep"] == result["keep"]


@settings(max_examples=300, deadline=None)
@given(backup_sets, policies)
def test_keeps_exactly_what_the_policy_says(backups, policy):
    result = rot.plan(backups, **policy)
    expected, selections = oracle(backups, policy)
    assert set(result["keep"]) == expected
    # Every backup is either kept or deleted, once, newest first.
    names = [n for n, _ in backups]
    assert sorted(result["keep"] + result["delete"]) == sorted(names)
    assert not set(result["keep"]) & set(result["delete"])
    for part in ("keep", "delete"):
        assert result[part] == sorted(result[part], key=when, reverse=True)
    # Each period kind keeps exactly min(count, periods that hold a backup) backups.
    for kind in ("daily", "weekly", "monthly"):
        marked = {n for n, why in result["reasons"].items() if kind in why}
        assert marked == selections[kind]
    assert len([n for n, why in result["reasons"].items() if "last" in why]) == min(policy["keep_last"], len(backups))


@settings(max_examples=200, deadline=None)
@given(backup_sets, policies, st.integers(min_value=0, max_value=12))
def test_raising_a_count_never_deletes_more(backups, policy, extra):
    result = rot.plan(backups, **policy)
    for key in rot.POLICY_KEYS:
        bigger = dict(policy, **{key: policy[key] + extra})
        assert set(rot.plan(backups, **bigger)["delete"]) <= set(result["delete"])
