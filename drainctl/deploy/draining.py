"""The drain step of a deploy: fence the old release, drain every targeted instance, count.

Instances that start after the plan was made (a worker the platform restarted) are drained too,
for a few rounds. Every instance seen here is remembered in ``drained_ids``: whatever commit it
reports later, it is never evidence of the new release.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from drainctl.channel import ControlClient, Outcome, Target
from drainctl.connection import ServerClock, translate_outage
from drainctl.deploy import oneoffs
from drainctl.deploy.lock import server_now
from drainctl.deploy.plan import DeployOptions, Plan, gone_reason, older_than
from drainctl.deploy.progress import Reporter, Row
from drainctl.deploy.result import DeployResult
from drainctl.deploy.undo import undo_hint
from drainctl.errors import DrainctlError, NotAcknowledged
from drainctl.fence import KEPT_FENCE_TTL, Fence, FenceStore
from drainctl.protocol import Command
from drainctl.registry import InstanceRecord

POLL = 0.2
NEWCOMER_ROUNDS = 3
# Drains sent at once when instances are addressed one by one.
MAX_PARALLEL = 32


class Drainer:
    """One deploy's drain: what it sends, shows and accounts for in the result."""

    def __init__(
        self,
        client: ControlClient,
        options: DeployOptions,
        reporter: Reporter,
        fences: FenceStore,
        result: DeployResult,
    ) -> None:
        self.client, self.options, self.reporter = client, options, reporter
        self.fences, self.result = fences, result
        self.drained_ids: set[str] = set()
        self.skipped: frozenset[str] = frozenset()

    def run(self, plan: Plan, deploy_id: str) -> None:
        """Fence the old release(s), drain every targeted instance, wait for every ack."""
        self.reporter.step(
            "drain",
            f"deadline {self.options.drain_deadline:g}s, fenced releases "
            f"{', '.join(plan.releases) or 'none'}",
        )
        self._skip_stale(plan)
        args = {
            "deadline": self.options.drain_deadline,
            "fences": self._set_fences(plan, deploy_id),
        }
        self.skipped = frozenset(r.instance_id for r in plan.stale)
        outcome = self._drain_planned(plan, args)
        for _ in range(NEWCOMER_ROUNDS):  # instances that started after the plan was made
            newcomers = self._newcomers(plan, outcome)
            if not newcomers:
                break
            for instance_id in newcomers:
                more = self._drain_watched(Target(instance_id=instance_id), args)
                outcome.replies += more.replies
                outcome.missing += more.missing
        self._account(outcome)
        self._note_drained(plan, outcome)
        if not outcome.ok:
            undeployed = f"{plan.release} is not deployed" if plan.release else "nothing was pushed"
            late = {r.instance_id for r in outcome.failed + outcome.missing}
            raise NotAcknowledged(
                f"drain: {len(outcome.failed)} failed, {len(outcome.missing)} did not answer; "
                f"{undeployed} and the app was resumed{oneoffs.still_running(plan.oneoffs, late)}"
            )

    def _skip_stale(self, plan: Plan) -> None:
        """Say which instances are not waited for; they count as gone (the fence still holds
        them if one comes back)."""
        if not plan.stale:
            return
        labels = ", ".join(f"{r.label}: {gone_reason(r)}" for r in plan.stale)
        self.reporter.note(f"not waiting for {len(plan.stale)} stale instance(s), gone: {labels}")
        for record in plan.stale:
            self.result.gone[record.process_type] = self.result.gone.get(record.process_type, 0) + 1

    def _set_fences(self, plan: Plan, deploy_id: str) -> list[dict[str, Any]]:
        clock = ServerClock()
        with translate_outage(self.client.settings):
            clock.sync(self.client.client)
            fences = [
                Fence(
                    release,
                    plan.drain_types,
                    clock.now() + self.options.fence_ttl,
                    deploy_id,
                    self.options.drain_deadline,
                )
                for release in plan.releases
            ]
            for fence in fences:
                self.fences.set(fence, self.options.fence_ttl)
            # Where the release is the commit (HEROKU_SLUG_COMMIT) or an image tag, rolling back
            # to one fenced by an earlier deploy must not bring the new instances up drained.
            self.fences.lift_any([name for name in (plan.commit, plan.release) if name])
        return [fence.as_arg() for fence in fences]

    def _drain_planned(self, plan: Plan, args: dict[str, Any]) -> Outcome:
        """One drain to the targeted types; by instance (at once) when some instance of those
        types is not to be drained (the release phase: one of the new or a newer release)."""
        by_type = Target(process_types=frozenset(plan.drain_types))
        planned = {r.instance_id for r in plan.to_drain}
        live = self.client.live(frozenset(plan.drain_types))
        # Stale instances get the drain by type too, unawaited (see _drain_watched).
        if all(r.instance_id in planned | self.skipped for r in live) or not planned:
            return self._drain_watched(by_type, args)
        targets = [Target(instance_id=instance_id) for instance_id in sorted(planned)]
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool:
            outcomes = list(pool.map(lambda target: self._drain_watched(target, args), targets))
        merged = Outcome(Command.DRAIN)
        for each in outcomes:
            merged.replies += each.replies
            merged.missing += each.missing
        return merged

    def _drain_watched(self, target: Target, args: dict[str, Any]) -> Outcome:
        """Send the drain in a thread; meanwhile show heartbeat states as they change."""
        box: list[Outcome | BaseException] = []

        def send() -> None:
            try:
                box.append(
                    self.client.send(
                        Command.DRAIN,
                        target=target,
                        args=args,
                        timeout=self.options.ack_wait,
                        not_awaited=self.skipped,
                    )
                )
            except BaseException as exc:  # re-raised in the calling thread
                box.append(exc)

        thread = threading.Thread(target=send, name="drainctl-deploy-drain", daemon=True)
        thread.start()
        types = set(target.process_types or ())
        while thread.is_alive():
            thread.join(POLL)
            with contextlib.suppress(DrainctlError):
                self.reporter.rows(
                    [self._row(r) for r in self.client.live(frozenset(types) or None)]
                )
        if isinstance(box[0], BaseException):
            raise box[0]
        outcome = box[0]
        self.reporter.rows(
            [Row.of_reply(r) for r in outcome.replies]
            + [replace(Row.of_record(r), state="NO REPLY") for r in outcome.missing]
        )
        return outcome

    def _row(self, record: InstanceRecord) -> Row:
        row = Row.of_record(record)
        return replace(row, state="gone") if record.instance_id in self.skipped else row

    def _newcomers(self, plan: Plan, outcome: Outcome) -> list[str]:
        known = {r.instance_id for r in outcome.replies} | {r.instance_id for r in outcome.missing}
        known |= self.skipped
        return [
            r.instance_id
            for r in self.client.live(frozenset(plan.drain_types))
            if r.instance_id not in known
            and r.doc.get("state") != "drained"
            and (plan.release is None or older_than(str(r.doc.get("release")), plan.release))
        ]

    def _account(self, outcome: Outcome) -> None:
        for reply in outcome.replies:
            kind = str(reply.instance.get("process_type"))
            self.result.drained[kind] = self.result.drained.get(kind, 0) + 1
            self.result.jobs_finished += len(reply.data.get("finished", []))
            self.result.jobs_handed_back += len(reply.data.get("handed_back", []))

    def _note_drained(self, plan: Plan, outcome: Outcome) -> None:
        """Every instance this drain touched, and any of the targeted types now held drained
        (a restart that came up under the fence)."""
        self.drained_ids |= {r.instance_id for r in plan.to_drain + plan.stale}
        self.drained_ids |= {r.instance_id for r in outcome.replies}
        self.drained_ids |= {r.instance_id for r in outcome.missing}
        with contextlib.suppress(DrainctlError):
            live = self.client.live(frozenset(plan.drain_types))
            self.drained_ids |= {
                r.instance_id
                for r in live
                if r.doc.get("state") == "drained"
                and (plan.release is None or older_than(str(r.doc.get("release")), plan.release))
            }


def keep_fences(
    client: ControlClient,
    fences: FenceStore,
    releases: tuple[str, ...],
    deploy_id: str,
    *,
    types: tuple[str, ...],
    drain_deadline: float,
    reporter: Reporter,
    ttl: float = KEPT_FENCE_TTL,
) -> str | None:
    """Extend this deploy's fences on ``releases`` to ``ttl`` (a day after a release: its zombies
    never resume); the command that undoes them, if any. A fence found gone is written again."""
    with translate_outage(client.settings):
        now = server_now(client.client)
        for release in releases:
            if fences.keep(release, deploy_id, now, ttl):
                continue
            if fences.get(release) is not None:
                reporter.note(f"warning: the fence on {release} is another deploy's")
                continue
            # Deleted or evicted mid-deploy: the instances holding it stay drained, but one that
            # restarts would not know; write it again, and say so.
            reporter.note(
                f"warning: the fence on {release} vanished during the deploy (deleted, or "
                "evicted: see `drainctl doctor`); written again"
            )
            fences.set(Fence(release, types, now + ttl, deploy_id, drain_deadline), ttl)
    return undo_hint(client.app, releases) if releases else None
