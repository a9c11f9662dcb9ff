"""The deploy: lock, plan, fence + drain, push, verify.

Any failure before or during the push (an instance that does not acknowledge, a rejected push,
Ctrl-C, SIGTERM) lifts the fence and resumes every targeted instance before the error propagates,
so the app is never left drained. So does a deploy that deployed nothing (the remote already had
the commit, or no new instance ever came up): a fence never stays on the newest live release.
After a real release the old release's fence is kept: a zombie of it can never take work again,
and the message names the ``drainctl unfence`` command that undoes it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drainctl.channel import ControlClient, unverified_only
from drainctl.connection import translate_outage
from drainctl.deploy import gitrepo, history, oneoffs
from drainctl.deploy.draining import Drainer, keep_fences
from drainctl.deploy.lock import VERIFY_PHASE, DeployLock, Holder, server_now
from drainctl.deploy.plan import (
    DeployOptions,
    IncomingSource,
    Plan,
    from_git,
    make_plan,
    read_procfile,
    target_types,
)
from drainctl.deploy.progress import Reporter, Row, counts_text, seen_state
from drainctl.deploy.push import push_command, run_push
from drainctl.deploy.result import DeployResult
from drainctl.deploy.signals import interrupt_on_sigterm
from drainctl.deploy.undo import lift_and_resume
from drainctl.deploy.verify import NewRelease, Verdict, VerifySpec, watch
from drainctl.errors import ConfigError, DrainctlError, VerifyFailed
from drainctl.fence import FenceStore
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

# What git prints when the remote already has everything: no release happens.
UP_TO_DATE = "Everything up-to-date"

__all__ = ["DeployResult", "Deployment", "lift_and_resume", "verify_release"]


class Deployment:
    """One deploy: ``drainctl deploy`` runs all of it; the pre-push hook (``source="hook"``) and
    the release phase (``source="release-phase"``, ``incoming`` from the environment) run
    ``prepare`` and hand the rest over (to a background verify, to the new release's instances).
    """

    def __init__(
        self,
        client: ControlClient,
        options: DeployOptions,
        reporter: Reporter,
        cwd: Path,
        *,
        source: str = "deploy",
        incoming: IncomingSource = from_git,
    ) -> None:
        self.client = client
        self.options = options
        self.reporter = reporter
        self.cwd = cwd
        self.source = source
        self.incoming = incoming
        self.signer = Signer.from_settings(client.settings)
        self.fences = FenceStore(client.client, client.app, self.signer)
        self.result = DeployResult()
        self.deploy_id = uuid.uuid4().hex[:12]
        self.lock: DeployLock | None = None
        # Instances drained by this deploy: never evidence of the new release.
        self.drained_ids: set[str] = set()
        self._held = contextlib.ExitStack()
        self._push_lines: list[str] = []

    def run(self) -> DeployResult:
        """Lock, plan, drain, push, verify; raises the DrainctlError that ends a failed deploy."""
        try:
            plan = self.prepare()
            if plan is None:
                return self.result
            self._guarded(plan, "push", lambda: self.push(plan))
            if any(UP_TO_DATE in line for line in self._push_lines):
                self.rollback(plan)
                return self._noop()
            self._keep_fences(plan)
            verdict = self._timed("verify", lambda: self._verify_or_resume(plan))
            self._summary(verdict)
            return self.result
        finally:
            self.unlock()

    def prepare(self) -> Plan | None:
        """Lock, plan, fence and drain (all the pre-push hook does); resumes everyone on failure.

        None when there is nothing to deploy (the remote already has the commit): then nothing
        was drained.
        """
        plan: Plan = self._timed("plan", self.plan)
        if self._already_live(plan):
            self._lift_stale_fences(plan)
            self._noop()
            return None
        self._guarded(plan, "drain", lambda: self.drain(plan))
        return plan

    def unlock(self) -> None:
        """Stop refreshing the deploy lock and release it (if this deploy still holds it)."""
        self._held.close()
        if self.lock is not None:
            with contextlib.suppress(DrainctlError), translate_outage(self.client.settings):
                self.lock.release()

    def hand_over(self) -> None:
        """The pre-push hook is done: its background verify keeps the lock (phase verify)."""
        self._held.close()
        if self.lock is not None:
            with translate_outage(self.client.settings):
                self.lock.refresh(phase=VERIFY_PHASE)

    def record(self, exit_code: int, error: str | None) -> None:
        """Append this deploy to the app's history (a Redis outage only warns)."""
        self.result.exit_code, self.result.error = exit_code, error
        who = self.lock.holder.who if self.lock else Holder.me("", "", 0).who
        entry = self.result.history_record(self.deploy_id, who, self.source)
        try:
            with translate_outage(self.client.settings):
                history.append(self.client.client, self.client.app, entry, self.signer)
        except DrainctlError as exc:
            self.reporter.note(f"warning: the deploy history was not written: {exc}")

    def _guarded(self, plan: Plan, phase: str, step: Callable[[], None]) -> None:
        """Run a step that may not leave the app drained: on any failure, roll back first."""
        with interrupt_on_sigterm():
            try:
                self._timed(phase, step)
            except (DrainctlError, KeyboardInterrupt):
                self.rollback(plan)
                raise

    def _timed(self, phase: str, step: Any) -> Any:
        started = time.monotonic()
        try:
            return step()
        finally:
            self.result.phases_s[phase] = time.monotonic() - started

    # -- steps ------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Check git, take the deploy lock, read the Procfile, list the live instances."""
        incoming = self.incoming(self.options, self.cwd)
        commit = self.result.commit = incoming.commit
        self._lock(commit)
        live = self.client.live()
        types = target_types(self.options.process_types, read_procfile(incoming.procfile), live)
        plan = make_plan(commit, types, live, incoming.release, self.options.one_offs)
        self.result.from_releases = plan.releases
        self.result.oneoffs = [
            oneoffs.summary(r, r.instance_id in plan.oneoffs_drained) for r in plan.oneoffs
        ]
        to = f"release {plan.release}" if plan.release else f"push {commit[:12]}"
        self.reporter.step("plan", f"drain {oneoffs.drain_text(plan)}; {to}")
        self.reporter.rows([Row.of_record(r) for r in plan.instances])
        oneoffs.report(plan, self.reporter)
        for missing in plan.missing_types:
            self.reporter.note(f"warning: no live {missing} instance to drain")
        if plan.to_drain and not plan.releases:
            self.reporter.note("warning: instances report no release: they cannot be fenced")
        if not (plan.to_drain or plan.stale or self.options.allow_empty):
            unverified = [r for r in self.client.live(unverified=True) if not r.trusted]
            raise ConfigError(
                f"nothing to drain: no live {' or '.join(plan.process_types) or 'drainable'} "
                f"instance of {self.client.app}; "
                + (
                    unverified_only(unverified)
                    if unverified
                    else "pass --allow-empty to push anyway"
                )
            )
        return plan

    def drain(self, plan: Plan) -> None:
        """Fence the old release(s), drain every targeted instance, wait for every ack."""
        drainer = Drainer(self.client, self.options, self.reporter, self.fences, self.result)
        try:
            drainer.run(plan, self.deploy_id)
        finally:
            self.drained_ids |= drainer.drained_ids

    def push(self, plan: Plan) -> None:
        """Run the push command, streaming its output (kept, to tell a push that did nothing)."""
        command = push_command(self.options.remote, self.options.ref, self.options.push_cmd)
        self.reporter.step("push", command)

        def show(line: str) -> None:
            self._push_lines.append(line)
            self.reporter.output(line)

        run_push(command, self.cwd, show, self.deploy_id)
        self.result.pushed = True

    def verify(self, plan: Plan) -> Verdict:
        """Watch heartbeats until the new release is stable and alone, or fails."""
        spec = VerifySpec(
            new=NewRelease(
                commit=plan.commit,
                old_releases=frozenset(plan.releases),
                old_instances=frozenset(self.drained_ids),
            ),
            required=plan.counts(),
            stable_for=self.options.stable_for,
            zombie_grace=self.options.zombie_grace,
            timeout=self.options.verify_timeout,
        )
        return verify_release(self.client, spec, self.reporter, self.result)

    def rollback(self, plan: Plan) -> None:
        """Lift this deploy's fence, then resume every targeted instance (Ctrl-C ignored)."""
        lift_and_resume(
            self.client,
            plan.releases,
            plan.drain_types,
            self.reporter,
            self.deploy_id,
            drained=frozenset(self.drained_ids),
        )

    # -- helpers ----------------------------------------------------------------------------

    def _lock(self, commit: str) -> None:
        """Take the deploy lock (waiting ``--wait-lock``) and keep it refreshed until unlock."""
        with translate_outage(self.client.settings):
            holder = Holder.me(self.deploy_id, commit, server_now(self.client.client))
            lock = DeployLock(self.client.client, self.client.app, holder, self.signer)
            before = lock.acquire(self.options.wait_lock)
        self.lock = lock
        self._held.enter_context(lock.refreshed())
        if before is not None:
            self.reporter.note(f"took the deploy lock over from a background verify: {before.who}")

    def _already_live(self, plan: Plan) -> bool:
        """Whether the remote's branch is at the commit already (unknown with --push-cmd; the
        release phase runs because the platform already has it)."""
        if self.options.push_cmd is not None or plan.release is not None:
            return False
        head = gitrepo.remote_head(self.options.remote, self.options.ref, self.cwd)
        return head == self.result.commit

    def _lift_stale_fences(self, plan: Plan) -> None:
        """The remote is at the commit, so instances running it are the newest live release: a
        fence on it (left by an abandoned deploy) must not keep it drained."""
        at_commit = NewRelease(commit=plan.commit)
        live = {str(r.doc.get("release")) for r in plan.instances if at_commit.matches(r.doc)}
        with translate_outage(self.client.settings):
            stale = tuple(r for r in sorted(live) if self.fences.get(r) is not None)
        if stale:
            self.reporter.note(f"the live release {', '.join(stale)} is fenced: lifting it")
            lift_and_resume(self.client, stale, plan.drain_types, self.reporter, None)

    def _noop(self) -> DeployResult:
        """Nothing was deployed: say so; the caller has resumed anything this deploy drained."""
        self.result.noop = True
        self.reporter.step(
            "done", f"nothing to deploy: {self.options.remote} already at {self.result.commit[:12]}"
        )
        return self.result

    def _keep_fences(self, plan: Plan) -> None:
        """The old release's zombies never resume: keep this deploy's fences for a day."""
        self.result.undo = keep_fences(
            self.client,
            self.fences,
            plan.releases,
            self.deploy_id,
            types=plan.drain_types,
            drain_deadline=self.options.drain_deadline,
            reporter=self.reporter,
        )

    def _verify_or_resume(self, plan: Plan) -> Verdict:
        """Verify; when no new instance ever came up, nothing was deployed: resume the old one."""
        try:
            return self.verify(plan)
        except VerifyFailed as exc:
            if self.result.verdict.get("new_seen"):
                raise VerifyFailed(
                    f"{exc}; {', '.join(plan.releases) or 'the old release'} stays fenced so "
                    f"its zombies never resume; to undo: {self.result.undo}"
                    if self.result.undo
                    else str(exc)
                ) from None
            self.rollback(plan)
            self.result.undo = None
            raise VerifyFailed(
                f"{exc}; no instance of the new release came up: the fence was lifted and the "
                "old release resumed"
            ) from None

    def _summary(self, verdict: Verdict) -> None:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in self.result.phases_s.items())
        drained = sum(self.result.drained.values())
        self.reporter.step(
            "done",
            f"{phases}; drained {drained} instance(s), {self.result.jobs_finished} job(s) "
            f"finished during the drain, {self.result.jobs_handed_back} handed back; new "
            f"release: {counts_text(verdict.stable)}",
        )
        if self.result.undo:
            self.reporter.note(
                f"{', '.join(self.result.from_releases)} stays fenced for 24 h so its zombies "
                f"never resume; `{self.result.undo}` lifts it"
            )


def verify_release(
    client: ControlClient,
    spec: VerifySpec,
    reporter: Reporter,
    result: DeployResult,
    stop: Callable[[], bool] = lambda: False,
) -> Verdict:
    """Watch until final; record the verdict in ``result``; raise VerifyFailed on failure.

    A watch stopped by ``stop()`` returns its (not ok) verdict without raising.
    """
    reporter.step("verify", f"need {counts_text(spec.required)} stable for {spec.stable_for:g}s")

    def show(obs: Any, verdict: Verdict) -> None:
        zombies = {z["instance_id"] for z in verdict.zombies}
        reporter.rows(
            [Row.of(s.doc, seen_state(s)) for s in obs.new.values()]
            + [
                Row.of(
                    s.doc,
                    "zombie" if s.doc.get("instance_id") in zombies else seen_state(s),
                )
                for s in obs.old.values()
            ]
        )

    verdict = watch(lambda: client.live(frozenset(spec.required)), spec, show, stop=stop)
    result.verdict = verdict.as_dict()
    if not verdict.ok and not verdict.stopped:
        raise VerifyFailed(verdict.message())
    reporter.note(verdict.message())
    return verdict
