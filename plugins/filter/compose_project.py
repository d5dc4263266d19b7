# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: compose_project
short_description: The Compose project of a service model on one host
version_added: 0.1.0
description:
  - Renders the normalised service model (the output of P(selfhost.stack.service_model#filter))
    into a Compose document for one host, with the collection's own PostgreSQL, Redis and
    edge Nginx where this host runs them.
  - Image references are C(${SERVICE_IMAGE}) variables, filled from the project's C(.env);
    every other value of the user's is escaped for Compose's interpolation.
  - Secrets are Compose secrets from files under C(secrets/<service>/); a secret a service
    wants in its environment is exported at start by the role's wrapper script, so it never
    appears in the Compose file or in C(docker inspect).
author: selfhost.stack developers
positional: _input, context
options:
  _input:
    description: The normalised service model.
    type: dict
    required: true
  context:
    description:
      - What runs on this host and the settings of the collection's services (keys C(name),
        C(services_here), C(restart), C(log_max_size), C(log_max_file), C(start_interval),
        C(builtin_healthcheck), C(secrets_hash), C(images), C(refs), C(nginx), C(postgres), C(redis)); see the app
        role's C(vars/main.yml).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Render the Compose file
  ansible.builtin.copy:
    content: "{{ app_model | selfhost.stack.compose_project(app_compose_context) | to_nice_yaml(indent=2) }}"
    dest: /opt/shop/compose.yaml
    mode: "0640"
"""

RETURN = r"""
_value:
  description: The Compose document (name, services, networks, volumes, secrets).
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.selfhost.stack.plugins.module_utils import compose_render


def compose_project(model, context):
    try:
        return compose_render.compose_project(model, context)
    except compose_render.RenderError as e:
        raise AnsibleFilterError(str(e))


def compose_plan(model, services_here, images=None, refs=None, redis_uid=999):
    """The other per-host facts the role needs from the model (see compose_plan.yml)."""
    return {
        "pools": compose_render.pools(model, services_here),
        "secret_files": compose_render.secret_files(model, services_here, images, refs, int(redis_uid)),
        "image_users": compose_render.image_users(model, services_here),
        "static": compose_render.static_entries(model, services_here),
        "migrations": compose_render.migrations(model, services_here),
        "image_env": compose_render.image_env(model, services_here),
    }


class FilterModule(object):
    def filters(self):
        return {"compose_project": compose_project, "compose_plan": compose_plan}
