"""The deploy: plan, fence + drain, push, verify.

Any failure before or during the push (an instance that does not acknowledge, a rejected push,
Ctrl-C, SIGTERM) lifts the fence and resumes every targeted instance before the error propagates,
so the app is never left drained. After the push the old release's fence is kept: a zombie of it
can never take work again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from drainctl.channel import ControlClient, Outcome, Target
from drainctl.connection import ServerClock, translate_outage
from drainctl.deploy.plan import (
    DeployOptions,
    Plan,
    local_commit,
    make_plan,
    read_procfile,
    target_types,
)
from drainctl.deploy.progress import Reporter, Row, counts_text, seen_state
from drainctl.deploy.push import push_command, run_push
from drainctl.deploy.signals import interrupt_on_sigterm, signals_ignored
from drainctl.deploy.verify import NewRelease, Verdict, VerifySpec, watch
from drainctl.errors import DrainctlError, NotAcknowledged, VerifyFailed
from drainctl.fence import Fence, FenceStore
from drainctl.protocol import Command

logger = logging.getLogger(__name__)

POLL = 0.2
RESUME_TIMEOUT = 5.0
NEWCOMER_ROUNDS = 3


@dataclass
class DeployResult:
    """What happened, for the summary and ``--json``."""

    exit_code: int = 0
    commit: str = ""
    phases_s: dict[str, float] = field(default_factory=dict)
    drained: dict[str, int] = field(default_factory=dict)
    jobs_finished: int = 0
    jobs_handed_back: int = 0
    verdict: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    pushed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "commit": self.commit,
            "phases_s": {k: round(v, 3) for k, v in self.phases_s.items()},
            "drained": self.drained,
            "jobs_finished": self.jobs_finished,
            "jobs_handed_back": self.jobs_handed_back,
            "verify": self.verdict,
            "error": self.error,
            "pushed": self.pushed,
        }


class Deployment:
    """One run of ``drainctl deploy``."""

    def __init__(
        self, client: ControlClient, options: DeployOptions, reporter: Reporter, cwd: Path
    ) -> None:
        self.client = client
        self.options = options
        self.reporter = reporter
        self.cwd = cwd
        self.fences = FenceStore(client.client, client.app)
        self.result = DeployResult()
        self.deploy_id = uuid.uuid4().hex[:12]

    def run(self) -> DeployResult:
        """Plan, drain, push, verify; raises the DrainctlError that ends a failed deploy."""
        plan = self.prepare()
        self._guarded(plan, "push", lambda: self.push(plan))
        with translate_outage(self.client.settings):
            for release in plan.releases:  # zombies of the old release never resume
                self.fences.keep(release)
        verdict = self._timed("verify", lambda: self.verify(plan))
        self._summary(verdict)
        return self.result

    def prepare(self) -> Plan:
        """Plan, fence and drain (all the pre-push hook does); resumes everyone on failure."""
        plan: Plan = self._timed("plan", self.plan)
        self._guarded(plan, "drain", lambda: self.drain(plan))
        return plan

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
        """Check git, read the Procfile, list the live instances; warn about missing types."""
        root, commit = local_commit(self.options, self.cwd)
        live = self.client.live()
        types = target_types(self.options.process_types, read_procfile(root / "Procfile"), live)
        plan = make_plan(commit, types, live)
        self.result.commit = commit
        self.reporter.step("plan", f"drain {counts_text(plan.counts())}; push {commit[:12]}")
        self.reporter.rows([Row.of_record(r) for r in plan.instances])
        for missing in plan.missing_types:
            self.reporter.note(f"warning: no live {missing} instance to drain")
        if plan.instances and not plan.releases:
            self.reporter.note("warning: instances report no release: they cannot be fenced")
        return plan

    def drain(self, plan: Plan) -> None:
        """Fence the old release(s), drain every targeted instance, wait for every ack."""
        self.reporter.step(
            "drain",
            f"deadline {self.options.drain_deadline:g}s, fenced releases "
            f"{', '.join(plan.releases) or 'none'}",
        )
        args = {"deadline": self.options.drain_deadline, "fences": self._set_fences(plan)}
        outcome = self._drain_watched(Target(process_types=frozenset(plan.process_types)), args)
        for _ in range(NEWCOMER_ROUNDS):  # instances that started after the plan was made
            newcomers = self._newcomers(plan, outcome)
            if not newcomers:
                break
            for instance_id in newcomers:
                more = self._drain_watched(Target(instance_id=instance_id), args)
                outcome.replies += more.replies
                outcome.missing += more.missing
        self._account(outcome)
        if not outcome.ok:
            raise NotAcknowledged(
                f"drain: {len(outcome.failed)} failed, {len(outcome.missing)} did not answer; "
                "nothing was pushed and the app was resumed"
            )

    def push(self, plan: Plan) -> None:
        """Run the push command, streaming its output."""
        command = push_command(self.options.remote, self.options.ref, self.options.push_cmd)
        self.reporter.step("push", command)
        run_push(command, self.cwd, self.reporter.output)
        self.result.pushed = True

    def verify(self, plan: Plan) -> Verdict:
        """Watch heartbeats until the new release is stable and alone, or fails."""
        spec = VerifySpec(
            new=NewRelease(commit=plan.commit, old_releases=frozenset(plan.releases)),
            required=plan.counts(),
            stable_for=self.options.stable_for,
            zombie_grace=self.options.zombie_grace,
            timeout=self.options.verify_timeout,
        )
        return verify_release(self.client, spec, self.reporter, self.result)

    def rollback(self, plan: Plan) -> None:
        """Lift the fence, then resume every targeted instance (Ctrl-C is ignored meanwhile)."""
        lift_and_resume(self.client, plan.releases, plan.process_types, self.reporter)

    # -- helpers ----------------------------------------------------------------------------

    def _set_fences(self, plan: Plan) -> list[dict[str, Any]]:
        clock = ServerClock()
        with translate_outage(self.client.settings):
            clock.sync(self.client.client)
            fences = [
                Fence(
                    release,
                    plan.process_types,
                    clock.now() + self.options.fence_ttl,
                    self.deploy_id,
                )
                for release in plan.releases
            ]
            for fence in fences:
                self.fences.set(fence, self.options.fence_ttl)
            # Where the release is the commit (HEROKU_SLUG_COMMIT), rolling back to a commit
            # fenced by an earlier deploy must not bring the new instances up drained.
            self.fences.lift([plan.commit])
        return [fence.as_arg() for fence in fences]

    def _drain_watched(self, target: Target, args: dict[str, Any]) -> Outcome:
        """Send the drain in a thread; meanwhile show heartbeat states as they change."""
        box: list[Outcome | BaseException] = []

        def send() -> None:
            try:
                box.append(
                    self.client.send(
                        Command.DRAIN, target=target, args=args, timeout=self.options.ack_wait
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
                    [Row.of_record(r) for r in self.client.live(frozenset(types) or None)]
                )
        if isinstance(box[0], BaseException):
            raise box[0]
        outcome = box[0]
        self.reporter.rows(
            [Row.of_reply(r) for r in outcome.replies]
            + [replace(Row.of_record(r), state="NO REPLY") for r in outcome.missing]
        )
        return outcome

    def _newcomers(self, plan: Plan, outcome: Outcome) -> list[str]:
        known = {r.instance_id for r in outcome.replies} | {r.instance_id for r in outcome.missing}
        return [
            r.instance_id
            for r in self.client.live(frozenset(plan.process_types))
            if r.instance_id not in known and r.doc.get("state") != "drained"
        ]

    def _account(self, outcome: Outcome) -> None:
        for reply in outcome.replies:
            kind = str(reply.instance.get("process_type"))
            self.result.drained[kind] = self.result.drained.get(kind, 0) + 1
            self.result.jobs_finished += len(reply.data.get("finished", []))
            self.result.jobs_handed_back += len(reply.data.get("handed_back", []))

    def _summary(self, verdict: Verdict) -> None:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in self.result.phases_s.items())
        drained = sum(self.result.drained.values())
        self.reporter.step(
            "done",
            f"{phases}; drained {drained} instance(s), {self.result.jobs_finished} job(s) "
            f"finished during the drain, {self.result.jobs_handed_back} handed back; new "
            f"release: {counts_text(verdict.stable)}",
        )


def verify_release(
    client: ControlClient, spec: VerifySpec, reporter: Reporter, result: DeployResult
) -> Verdict:
    """Watch until final; record the verdict in ``result``; raise VerifyFailed on failure."""
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

    verdict = watch(lambda: client.live(frozenset(spec.required)), spec, show)
    result.verdict = verdict.as_dict()
    if not verdict.ok:
        raise VerifyFailed(verdict.message())
    reporter.note(verdict.message())
    return verdict


def lift_and_resume(
    client: ControlClient, releases: tuple[str, ...], types: tuple[str, ...], reporter: Reporter
) -> None:
    """Undo a drain: delete the fences first (fenced listeners refuse to resume), then resume."""
    with signals_ignored():
        reporter.step("rollback", f"lifting the fence on {', '.join(releases) or '-'}; resuming")
        try:
            with translate_outage(client.settings):
                FenceStore(client.client, client.app).lift(list(releases))
            target = Target(process_types=frozenset(types))
            outcome = client.send(Command.RESUME, target=target, timeout=RESUME_TIMEOUT)
            reporter.rows([Row.of_reply(r) for r in outcome.replies])
            if not outcome.ok:
                reporter.note(f"warning: {len(outcome.missing)} did not confirm resume")
        except DrainctlError as exc:
            reporter.note(f"warning: could not resume everyone: {exc}")
