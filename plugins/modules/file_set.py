#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: file_set
short_description: Bring several small files to their content, owner, group and mode in one call
version_added: 0.1.0
description:
  - Compares each file of O(files) with the one on the host and changes the ones that differ. A new or changed
    content is written to a temporary file in the same directory, given its owner, group and mode first, and
    renamed over the old file, so no reader sees half a file or a file with the wrong mode. A file whose content
    is right but whose owner, group or mode is not is changed in place.
  - One module call for all the files. A loop of M(ansible.builtin.copy) costs four round trips to the host per
    file (temporary directory, stat, file attributes, clean-up), M(ansible.builtin.template) five; the docker role
    writes C(daemon.json) with this module.
  - A file's directory must exist or be one of O(directories); in check mode, the files of a missing directory (one
    an earlier task would create) are reported as new. Meant for small text files, as the contents travel in the
    module's arguments.
author: selfhost.stack developers (@selfhost-stack)
options:
  files:
    description: The files, in the order they are written. The first one that fails stops the rest.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file. Anything but a regular file there (a symbolic link, a directory) is refused.
        type: str
        required: true
      content:
        description: The whole content, as text. Written UTF-8 encoded, exactly as given (no newline is added).
        type: str
        required: true
      owner:
        description: User name or numeric uid the file belongs to.
        type: str
        default: "0"
      group:
        description: Group name or numeric gid the file belongs to.
        type: str
        default: "0"
      mode:
        description: Octal mode, as a string such as V('0400').
        type: str
        default: "0600"
      validate:
        description:
          - A command that checks a new content before it replaces the file, with C(%s) for the temporary file
            (as M(ansible.builtin.template)'s C(validate)). When it fails the old file stays and the task fails with
            the command's output. Not run in check mode, nor for a file whose content does not change.
        type: str
  absent:
    description: Files that must not exist (regular files or symbolic links), removed after O(files) are written.
    type: list
    elements: str
    default: []
  directories:
    description: Directories brought to their owner, group and mode (created with their missing parents) before O(files).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory. Anything but a directory there is refused.
        type: str
        required: true
      owner:
        description: User name or numeric uid the directory belongs to.
        type: str
        default: "0"
      group:
        description: Group name or numeric gid the directory belongs to.
        type: str
        default: "0"
      mode:
        description: Octal mode, as a string such as V('0700').
        type: str
        default: "0755"
attributes:
  check_mode:
    support: full
    description: Reports which files would change and how; writes nothing.
  diff_mode:
    support: full
    description:
      - Shows each file whose content changes, before and after. For secret contents set the task's
        C(no_log) and turn C(diff) off, as the app role does.
"""

EXAMPLES = r"""
- name: Write the helper scripts of a role
  selfhost.stack.file_set:
    files:
      - path: /opt/demo/selfhost/probe
        content: "{{ lookup('ansible.builtin.file', 'probe', rstrip=false) }}"
        mode: "0755"

- name: Write a secret file only the uid of the service can read
  selfhost.stack.file_set:
    files:
      - path: /opt/demo/secrets/backend/db_password
        content: "{{ app_db_password }}"
        owner: "10001"
        group: "10001"
        mode: "0400"
  no_log: true
  diff: false

- name: Write daemon.json, checked by dockerd before it replaces the live one, and remove an old file
  selfhost.stack.file_set:
    files:
      - path: /etc/docker/daemon.json
        content: "{{ lookup('ansible.builtin.template', 'daemon.json.j2') }}"
        mode: "0644"
        validate: dockerd --validate --config-file %s
    absent: [/etc/apt/preferences.d/docker-engine.pref]
"""

RETURN = r"""
files:
  description: Per file, in the order of O(files), whether it changed and what.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /opt/demo/selfhost/probe
    changed:
      description: Whether the file was changed (in check mode, would be).
      type: bool
      sample: true
    changes:
      description:
        - What differed, among V(content), V(owner), V(group) and V(mode) (all four for a new file), V(absent) for a
          file removed, V(directory) for a directory created.
      type: list
      elements: str
      sample: [content]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.stack.plugins.module_utils.file_set import FileSet, FileSetError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                content=dict(type="str", required=True),
                owner=dict(type="str", default="0"),
                group=dict(type="str", default="0"),
                mode=dict(type="str", default="0600"),
                validate=dict(type="str"),
            )),
            absent=dict(type="list", elements="str", default=[]),
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                owner=dict(type="str", default="0"),
                group=dict(type="str", default="0"),
                mode=dict(type="str", default="0755"),
            )),
        ),
        supports_check_mode=True,
    )
    try:
        file_set = FileSet(module.check_mode, module.run_command)
        changed, results = file_set.run(module.params["files"], module.params["absent"], module.params["directories"])
    except (FileSetError, OSError) as error:
        module.fail_json(msg=str(error))
    result = dict(changed=changed, files=[dict(path=r["path"], changed=r["changed"], changes=r["changes"]) for r in results])
    if module._diff:
        result["diff"] = [dict(before_header=r["path"], after_header=r["path"], before=r["before"], after=r["after"])
                          for r in results if "content" in r["changes"]]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
