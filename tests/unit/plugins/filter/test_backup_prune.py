"""The selfhost.stack.backup_prune filter, called directly and through a real Jinja template."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.stack.plugins.filter.backup_prune import FilterModule, backup_prune

ROOT = Path(__file__).resolve().parents[4]
DAYS = ["demo-202611%02dT020000Z.dump" % d for d in range(15, 23)]  # 15th..22nd, oldest first


def test_filter_is_registered():
    assert FilterModule().filters()["backup_prune"] is backup_prune


def test_names_and_paths_come_back_as_given():
    paths = ["/var/backups/demo/" + n for n in DAYS]
    assert backup_prune(paths, keep_last=0, keep_daily=6, keep_weekly=0, keep_monthly=0) == paths[1::-1]
    assert backup_prune(DAYS, keep_last=7, keep_daily=0, keep_weekly=0, keep_monthly=0) == [DAYS[0]]


def test_find_results_with_verified_flags():
    files = [{"path": "/b/" + n, "size": 1} for n in DAYS[-3:]]
    files[-1]["verified"] = False  # newest, not verified: kept as newest; the next one as newest verified
    assert backup_prune(files, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0) == ["/b/" + DAYS[-3]]


def test_verified_list_names_the_checksummed_backups():
    names = DAYS[-3:]
    # Only the oldest of the three has a checksum: it survives although no count keeps it.
    assert backup_prune(names, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, verified=[names[0]]) == [names[1]]
    assert backup_prune(names, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, verified=[]) == names[1::-1]


def test_unrelated_files_are_never_returned():
    assert backup_prune(["notes.txt", "demo-20261122T020000Z.dump.sha256"], keep_last=0) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep_daily": -1}, "keep_daily must be an integer >= 0, got -1"),
        ({"keep_last": "-3"}, "keep_last must be an integer >= 0"),
        ({"keep_monthly": "lots"}, "keep_monthly must be an integer >= 0"),
        ({"verified": "demo-20261122T020000Z.dump"}, "verified must be a list"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        backup_prune(DAYS, **kwargs)


@pytest.mark.parametrize("bad", ["demo-20261122T020000Z.dump", {"path": "x"}, 42, [42], [{"size": 1}]])
def test_bad_input(bad):
    with pytest.raises(AnsibleFilterError, match="backup_prune"):
        backup_prune(bad)


def test_through_ansible(tmp_path):
    """The FQCN resolves from the collection and the result is what a playbook gets."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        """
- hosts: localhost
  gather_facts: false
  vars:
    names: %s
  tasks:
    - ansible.builtin.assert:
        that:
          - (names | selfhost.stack.backup_prune(keep_last=2, keep_daily=0, keep_weekly=1, keep_monthly=0)) == %s
    - ansible.builtin.debug:
        msg: "{{ names | selfhost.stack.backup_prune(keep_daily=-2) }}"
"""
        % (DAYS, list(reversed(DAYS[:-2])))
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", str(playbook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = proc.stdout + proc.stderr
    assert "ok: [localhost]" in output, output
    assert proc.returncode != 0 and "keep_daily must be an integer >= 0, got -2" in output, output
