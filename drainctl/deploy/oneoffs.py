"""One-off processes in a deploy (``--one-offs wait|ignore``): how the plan lists them.

A one-off (``drainctl run``: a Heroku Scheduler job, a ``heroku run:detached`` backfill) runs the
release it started on until it ends; a deploy restarts nothing of it. ``wait`` (the default)
drains it like any instance: the deploy fences its release and type, the one-off finishes (or is
SIGTERMed, per its own ``--on-drain``) and acknowledges within the drain deadline, or the deploy
fails before the push. ``ignore`` leaves it running on the old code: not drained, not fenced,
not waited for. Either way it is listed apart in the plan and never expected back on the new
release.

Fences are per release and process type, so a one-off registered under a type the deploy drains
anyway (``drainctl run -t worker``) is drained with that type whatever ``--one-offs`` says.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import TYPE_CHECKING, Any

from drainctl.deploy.progress import Reporter, Row, counts_text
from drainctl.registry import InstanceRecord

if TYPE_CHECKING:  # plan.py imports OneOffs from here
    from drainctl.deploy.plan import Plan


class OneOffs(str, Enum):
    """What a deploy does with running one-off processes."""

    WAIT = "wait"
    IGNORE = "ignore"


def run_time(record: InstanceRecord) -> float:
    """Seconds the one-off's command has run: as of its last beat, plus that beat's age."""
    run_s = record.doc.get("run_s")
    return round((run_s if isinstance(run_s, (int, float)) else 0.0) + record.age, 1)


def detail(record: InstanceRecord) -> str:
    """The plan's detail cell: the command and its run time."""
    return f"{record.doc.get('command')} ({run_time(record):g}s)"


def summary(record: InstanceRecord, waited: bool) -> dict[str, Any]:
    """A one-off as ``--json`` lists it."""
    doc = record.doc
    return {
        "instance_id": record.instance_id,
        "process_type": record.process_type,
        "dyno": doc.get("dyno"),
        "release": doc.get("release"),
        "command": doc.get("command"),
        "run_s": run_time(record),
        "handling": (OneOffs.WAIT if waited else OneOffs.IGNORE).value,
    }


def still_running(records: Iterable[InstanceRecord], ids: set[str]) -> str:
    """A hint for a failed drain: which of ``ids`` are one-offs, and the way around waiting."""
    named = [f"{r.label} `{r.doc.get('command')}`" for r in records if r.instance_id in ids]
    if not named:
        return ""
    return (
        f"; one-off(s) not done in time: {', '.join(named)} (--one-offs ignore deploys without "
        "waiting for one-offs; a longer --drain-deadline waits longer)"
    )


def report(plan: Plan, reporter: Reporter) -> None:
    """The plan's one-off section: each one-off with its command and run time, and what the
    deploy does with it."""
    waited = [r for r in plan.oneoffs if r.instance_id in plan.oneoffs_drained]
    if waited:
        reporter.note(
            f"one-offs: {len(waited)} running, waited for: drained like the others, each must be "
            "done within the drain deadline or the deploy fails, deploying nothing"
        )
    if plan.ignored:
        reporter.note(
            f"one-offs: {len(plan.ignored)} running, ignored (--one-offs ignore): not drained, "
            "not fenced, not waited for; they finish on the old release's code"
        )
    reporter.rows(
        [Row.of(r.doc, detail=detail(r)) for r in waited]
        + [Row.of(r.doc, "ignored", detail(r)) for r in plan.ignored]
    )


def drain_text(plan: Plan) -> str:
    """``1 clock, 1 worker and 2 one-off(s)`` (the one-offs drained)."""
    waited = len(plan.to_drain) - len(plan.instances)
    return counts_text(plan.counts()) + (f" and {waited} one-off(s)" if waited else "")
