# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which images a switch's prune removes, and what Docker says it reclaimed."""

import pytest

from ansible_collections.selfhost.stack.plugins.module_utils.image_prune import reclaimed_bytes, repository, unused_images

API_OLD, API_NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize("ref, repo", [
    ("registry:5000/shop/api:2.0", "registry:5000/shop/api"),
    ("registry:5000/shop/api", "registry:5000/shop/api"),
    ("docker.io/library/postgres:16", "postgres"),
    ("postgres@sha256:" + "a" * 64, "postgres"),
    ("ghcr.io/acme/web:1.2@sha256:" + "b" * 64, "ghcr.io/acme/web"),
])
def test_repository_is_the_name_without_tag_or_digest(ref, repo):
    assert repository(ref) == repo


def row(ref, image_id):
    repo, _sep, tag = ref.rpartition(":")
    return {"Repository": repo, "Tag": tag, "ID": image_id}


def test_old_tags_of_the_apps_repositories_go_and_everything_else_stays():
    listed = [row("registry:5000/shop/api:1.0", API_OLD), row("registry:5000/shop/api:2.0", API_NEW),
              row("postgres:15", "sha256:" + "3" * 64), row("postgres:16", "sha256:" + "4" * 64),
              row("registry:5000/other/tool:1", "sha256:" + "5" * 64),
              {"Repository": "<none>", "Tag": "<none>", "ID": "sha256:" + "6" * 64}]
    kept = ["registry:5000/shop/api:2.0", "docker.io/library/postgres:16"]
    assert unused_images(listed, kept, set()) == ["postgres:15", "registry:5000/shop/api:1.0"]


def test_an_image_a_release_or_container_uses_stays_under_any_tag():
    listed = [row("registry:5000/shop/api:1.0", API_OLD), row("registry:5000/shop/api:latest", API_NEW)]
    assert unused_images(listed, ["registry:5000/shop/api:2.0"], {API_OLD, API_NEW}) == []


def test_nothing_is_removed_when_no_release_names_a_repository():
    assert unused_images([row("registry:5000/shop/api:1.0", API_OLD)], [], set()) == []


@pytest.mark.parametrize("output, expected", [
    ("Deleted Images:\ndeleted: sha256:abc\n\nTotal reclaimed space: 12.5MB\n", 12500000),
    ("Total reclaimed space: 0B\n", 0),
    ("ID\tRECLAIMABLE\tSIZE\nabc\ttrue\t1kB\nTotal:\t1.2GB\n", 1200000000),
    ("Total:\t3KiB\n", 3000),
    ("", 0),
])
def test_reclaimed_bytes_reads_what_docker_prune_prints(output, expected):
    assert reclaimed_bytes(output) == expected
