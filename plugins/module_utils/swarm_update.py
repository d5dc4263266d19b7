# -*- coding: utf-8 -*-
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What became of a stack deploy, service by service, from `docker service inspect`.

`docker stack deploy` exits 0 after Swarm rolled an update back (docker/cli issue 6752), so the
role reads each service's UpdateStatus instead. A deploy resets the status of services whose
tasks did not change to none.
"""

from __future__ import annotations

DONE = "done"          # updated and monitored without failure, or nothing to update
PENDING = "pending"    # still rolling: ask again
ROLLED_BACK = "rolled back"
PAUSED = "paused"      # stopped half-way; Swarm waits for a person (failure_action pause)

STATES = {
    None: DONE,
    "completed": DONE,
    "updating": PENDING,
    "rollback_started": PENDING,
    "paused": PAUSED,
    "rollback_paused": PAUSED,
    "rollback_completed": ROLLED_BACK,
}


def template_changed(inspected):
    """Whether the last deploy changed what the service's tasks run (a rolling update is due),
    rather than only its replica count or nothing."""
    previous = inspected.get("PreviousSpec")
    return previous is not None and previous.get("TaskTemplate") != inspected["Spec"].get("TaskTemplate")


def outcome(inspected, starting=False):
    """(verdict, message) of one service's `docker service inspect` object. A rollback that is
    still running is pending, but never done: its end is `rollback_completed`.
    A deploy resets the status; Swarm's updater sets it once it starts. While `starting` (just
    after the deploy), a service whose tasks changed but whose update has not started is pending.
    Later it is done: Swarm found no task to replace."""
    status = inspected.get("UpdateStatus") or {}
    state = status.get("State")
    if state is None and starting and template_changed(inspected):
        return PENDING, "update not started yet"
    if state not in STATES:
        return PAUSED, "unknown update state %r" % state
    return STATES[state], status.get("Message", "")


def verdicts(services, starting=False):
    """{service name: (verdict, message)} of a list of inspect objects."""
    return dict((s["Spec"]["Name"], outcome(s, starting)) for s in services)


def failures(services):
    """Services whose update did not land, with Swarm's message: what the play names."""
    return dict((name, message) for name, (verdict, message) in verdicts(services).items()
                if verdict in (ROLLED_BACK, PAUSED))


def settled(services, starting=False):
    return all(verdict != PENDING for verdict, _message in verdicts(services, starting).values())
