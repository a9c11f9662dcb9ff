"""The way back: lift a fence and resume the instances it held.

A deploy lifts only the fences it set (compare-and-delete on its deploy id), so a deploy that
lost a race never undoes the winner's. ``drainctl unfence`` lifts whatever fence is there.
Every message that leaves a fence in place names the command that undoes it: :func:`undo_hint`.
"""

from __future__ import annotations

import shlex

from drainctl.channel import ControlClient, Target
from drainctl.connection import translate_outage
from drainctl.deploy.progress import Reporter, Row
from drainctl.deploy.signals import signals_ignored
from drainctl.errors import DrainctlError
from drainctl.fence import FenceStore
from drainctl.protocol import Command

RESUME_TIMEOUT = 5.0


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
) -> bool:
    """Undo a drain: delete the fences first (fenced listeners refuse to resume), then resume.

    With a ``deploy_id`` only that deploy's fences go; with None, any (``drainctl unfence``).
    True when every targeted instance confirmed the resume.
    """
    with signals_ignored():
        reporter.step("rollback", f"lifting the fence on {', '.join(releases) or '-'}; resuming")
        try:
            with translate_outage(client.settings):
                store = FenceStore(client.client, client.app)
                if deploy_id is None:
                    store.lift_any(list(releases))
                else:
                    store.lift(list(releases), deploy_id)
            target = Target(process_types=frozenset(types) or None)
            outcome = client.send(Command.RESUME, target=target, timeout=RESUME_TIMEOUT)
            reporter.rows([Row.of_reply(r) for r in outcome.replies])
            # Zombies of another release, still fenced, rightly refuse: not a failure here.
            refused = [r for r in outcome.failed if r.instance.get("release") in releases]
            if outcome.missing or refused:
                reporter.note(
                    f"warning: {len(outcome.missing)} did not answer and {len(refused)} "
                    f"refused the resume (`drainctl --app {client.app} status` shows them)"
                )
            return not outcome.missing and not refused
        except DrainctlError as exc:
            reporter.note(f"warning: could not resume everyone: {exc}")
            return False


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
