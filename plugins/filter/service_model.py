# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: service_model
short_description: The app role's service model, validated and normalised
version_added: 0.1.0
description:
  - Checks an C(app_services) dict (service name to specification, see C(roles/app/README.md))
    and returns it normalised, every key of every service present, ready for rendering.
  - Every error is collected; when there are any, the filter fails with all messages, sorted and
    joined by C(; ). Each message starts with the dotted path of the field, for example
    C(app_services.api.port).
  - Names and paths the collection uses itself are refused - service names that would share a
    generated name (C(<service>-migrate-<n>), C(<service>__<secret>), the image variable and Nginx
    pool of another service), the volumes C(postgres_data) and C(redis_data), and volume or tmpfs
    paths at, above or below C(/run/secrets) and C(/selfhost).
  - Secret values are only tested for being non-empty; no message and no part of the result
    contains one.
author: selfhost.stack developers
positional: _input
options:
  _input:
    description: The services, C(app_services).
    type: dict
    required: true
  defaults:
    description:
      - Per-service defaults merged under each service. Keys C(limits) (C(memory), C(cpus), C(pids)),
        C(healthcheck) (C(interval), C(timeout), C(retries), C(start_period)), C(tmpfs), C(read_only),
        C(replicas) and C(stop_grace_period).
      - Built in when absent - limits C(512M), C(1.0) CPUs, 512 pids; healthcheck timings C(5s), C(3s),
        12 retries, C(30s); tmpfs C([/tmp]); read-only root filesystem; one replica; stop grace period C(30s).
    type: dict
  secrets:
    description: Name to value of every secret there is (the built-in ones and C(app_secrets)).
    type: dict
  data_services:
    description: The collection's data services that are enabled; a service may depend on these.
    type: list
    elements: str
    default: [postgres, redis]
  project_dir:
    description:
      - When given, checked as C(app_project_dir) - absolute, normalised and no system directory.
    type: str
"""

EXAMPLES = r"""
- name: Validate and normalise the application's services
  ansible.builtin.set_fact:
    app_model: >-
      {{ app_services | selfhost.stack.service_model(
           defaults={'limits': {'memory': '256M'}},
           secrets=app_secrets | combine({'db_password': app_db_password}),
           data_services=['postgres'] + (['redis'] if app_redis_enabled else []),
           project_dir=app_project_dir) }}

- name: A string route becomes a route dict, a port of digits a number
  ansible.builtin.debug:
    msg: "{{ {'web': {'image': 'nginx:1.27', 'port': '8080', 'routes': ['/']}} | selfhost.stack.service_model }}"
  # -> web: routes [{path: /, websocket: false}], port 8080, healthcheck kind tcp, rollout zero-downtime
"""

RETURN = r"""
_value:
  description:
    - Service name to its normalised specification, ordered by name. Every key is present; optional
      ones absent from the input are C(null) or their default.
    - Keys image, command, entrypoint, user, port, routes (path, websocket), healthcheck (kind, path,
      test, interval, timeout, retries, start_period), env (values as strings), secrets (name, env,
      file_env), secrets_owner, volumes (name, path, backup, read_only), tmpfs, read_only, cap_add,
      replicas, limits (memory, cpus as a string, pids), depends_on, rollout, stop_grace_period,
      static (path, from_image, volume, max_age) and migrations (command, image).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.stack.plugins.module_utils.service_model import ModelError, normalize


def service_model(services, defaults=None, secrets=None, data_services=("postgres", "redis"), project_dir=None):
    """The normalised ``services``; fails with every error of the model."""
    try:
        return normalize(services, defaults=defaults, secrets=secrets, data_services=data_services, project_dir=project_dir)
    except ModelError as exc:
        raise AnsibleFilterError("; ".join(sorted(exc.errors))) from exc


class FilterModule:
    """Service model filters."""

    def filters(self):
        return {"service_model": service_model}
