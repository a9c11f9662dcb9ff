"""The way back: lift a fence and resume the instances it held.

A deploy lifts only the fences it set (compare-and-delete on its deploy id), so a deploy that
lost a race never undoes the winner's. ``drainctl unfence`` lifts whatever fence is there.
Every message that leaves a fence in place names the command that undoes it: :func:`undo_hint`.
"""

from __future__ import annotations

import shlex
import time

from drainctl.channel import ControlClient, Outcome, Target
from drainctl.connection import translate_outage
from drainctl.deploy.progress import Reporter, Row
from drainctl.deploy.signals import signals_ignored
from drainctl.errors import DrainctlError
from drainctl.fence import FenceStore
from drainctl.protocol import Command

RESUME_TIMEOUT = 5.0
# How long a rollback keeps resuming drained instances that have not answered yet: after Redis
# restarted empty they come back within a few heartbeats, and a fence lost with the data lifts
# nothing by itself (see drainctl.fence).
RESUME_PATIENCE = 20.0


def undo_hint(app: str, releases: tuple[str, ...] | list[str]) -> str:
    """The exact command that lifts these releases' fences and resumes their instances."""
    base = ["drainctl", "--app", app, "unfence"]
    if len(releases) == 1:
        return shlex.join([*base, "--release", releases[0]])
    return shlex.join(base)


def lift_and_resume(
    client: ControlClient,
    releases: tuple[str, ...],
    types: tuple[str, ...],
    reporter: Reporter,
    deploy_id: str | None,
    *,
    drained: frozenset[str] = frozenset(),
) -> bool:
    """Undo a drain: delete the fences first (fenced listeners refuse to resume), then resume.

    With a ``deploy_id`` only that deploy's fences go; with None, any (``drainctl unfence``).
    Instances in ``drained`` that do not answer are asked again for up to ``RESUME_PATIENCE``.
    True when every targeted instance confirmed the resume.
    """
    with signals_ignored():
        reporter.step("rollback", f"lifting the fence on {', '.join(releases) or '-'}; resuming")
        give_up = time.monotonic() + RESUME_PATIENCE
        waiting, lifted = set(drained), False
        outcome: Outcome | None = None
        while True:
            try:
                if not lifted:
                    _lift(client, releases, deploy_id)
                    lifted = True
                outcome = _resume(client, types, reporter)
                waiting -= {r.instance_id for r in outcome.replies if r.ok}
            except DrainctlError as exc:  # Redis restarting: keep trying, it holds the fences
                outcome = None
                reporter.note(f"warning: could not resume everyone yet: {exc}")
            if (outcome is not None and not waiting) or time.monotonic() >= give_up:
                break
            time.sleep(1.0)
        if outcome is None:
            return False
        # Zombies of another release, still fenced, rightly refuse: not a failure here.
        refused = [r for r in outcome.failed if r.instance.get("release") in releases]
        if outcome.missing or refused or waiting:
            reporter.note(
                f"warning: {len(outcome.missing) + len(waiting)} did not answer and "
                f"{len(refused)} refused the resume (`drainctl --app {client.app} status` "
                "shows them)"
            )
        return not outcome.missing and not refused and not waiting


def _lift(client: ControlClient, releases: tuple[str, ...], deploy_id: str | None) -> None:
    with translate_outage(client.settings):
        store = FenceStore(client.client, client.app)
        if deploy_id is None:
            store.lift_any(list(releases))
        else:
            store.lift(list(releases), deploy_id)


def _resume(client: ControlClient, types: tuple[str, ...], reporter: Reporter) -> Outcome:
    target = Target(process_types=frozenset(types) or None)
    outcome = client.send(Command.RESUME, target=target, timeout=RESUME_TIMEOUT)
    reporter.rows([Row.of_reply(r) for r in outcome.replies])
    return outcome


def unfence(
    client: ControlClient, release: str | None, types: tuple[str, ...], reporter: Reporter
) -> list[str]:
    """``drainctl unfence``: lift the fence on ``release`` (default: every fenced release) and
    resume; the releases that were fenced."""
    with translate_outage(client.settings):
        store = FenceStore(client.client, client.app)
        releases = [release] if release else store.fenced_releases()
        found = [r for r in releases if store.get(r) is not None]
    lift_and_resume(client, tuple(releases), types, reporter, None)
    return found
