"""The release phase's verdict, given by the new release itself.

``drainctl release-phase`` drains the old release and exits, and nobody is left at a terminal to
verify. It leaves an :class:`~drainctl.deploy.awaiting.Awaiting` record for the new release.
Every listener calls :func:`confirm_in_background` once at start: one GET of that key for its own
release, on a daemon thread, through the listener's own connection pool (no extra connection).
The instance that claims the deploy (``SET NX`` on ``Keys.deploy_confirm``, refreshed while it
works) records in the history that the new release is up, holds the deploy lock the release
phase handed over, runs the verification ``drainctl deploy`` runs (:func:`verify_release`), keeps
the old release's fences for a day once an instance of the new release was seen (its zombies
never resume), records the verdict and deletes the record. The others check again every
CLAIM_RETRY seconds while the record is there, so a claimer that dies (the first instance of a
crash loop) is replaced. Nothing here raises into the host or blocks it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.deploy import history
from drainctl.deploy.awaiting import Awaiting, read
from drainctl.deploy.draining import keep_fences
from drainctl.deploy.lock import DeployLock, Holder, server_now
from drainctl.deploy.orchestrator import verify_release
from drainctl.deploy.plan import UNKNOWN_RELEASE
from drainctl.deploy.progress import Row
from drainctl.deploy.result import FAILED, OK, DeployResult
from drainctl.deploy.verify import Verdict
from drainctl.errors import VerifyFailed
from drainctl.fence import FenceStore
from drainctl.identity import Identity
from drainctl.keys import Keys
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

SOURCE = "app"
UP = "up"
CLAIM_TTL = 15.0
# How often a claim is refreshed, and how often an instance that lost it checks again.
CLAIM_RETRY = 5.0


def confirm_in_background(
    client: redis.Redis,
    settings: Settings,
    identity: Identity,
    stopping: threading.Event | None = None,
) -> None:
    """Called once by every listener at start: never raises, never blocks (a daemon thread);
    gives up when ``stopping`` is set (the listener stopped)."""
    if identity.release == UNKNOWN_RELEASE:
        return
    try:
        threading.Thread(
            target=_confirm_quietly,
            args=(client, settings, identity, stopping or threading.Event()),
            name="drainctl-confirm",
            daemon=True,
        ).start()
    except Exception:  # e.g. no thread left to start: the host must not notice
        logger.exception("could not start the deploy confirmation")


def _confirm_quietly(
    client: redis.Redis, settings: Settings, identity: Identity, stopping: threading.Event
) -> None:
    try:
        confirm(client, settings, identity, stopping)
    except Exception as exc:  # an outage, the listener stopping: the verdict stays unrecorded
        logger.warning("the deploy confirmation of release %s stopped: %s", identity.release, exc)


def confirm(
    client: redis.Redis,
    settings: Settings,
    identity: Identity,
    stopping: threading.Event | None = None,
) -> Verdict | None:
    """While a release phase awaits this instance's release: claim it (or wait for the claim of
    an instance that died to expire), record that the release is up, verify it, keep the old
    fences, record the verdict. None when there was nothing to do, or ``stopping`` was set."""
    signer = Signer.from_settings(settings)
    stopping = stopping or threading.Event()
    while not stopping.is_set():
        awaiting = read(client, identity.app, identity.release, signer)
        if awaiting is None:  # none, or answered by another instance meanwhile
            return None
        key = Keys(identity.app).deploy_confirm(awaiting.deploy_id)
        claim = Claim.take(client, key, identity.instance_id)
        if claim is not None:
            break
        stopping.wait(CLAIM_RETRY)
    else:
        return None
    try:
        confirmation = Confirmation(client, settings.replace(app=identity.app), identity, awaiting)
        return confirmation.run(claim, stopping)
    finally:
        claim.release()


# Compare-and-expire / compare-and-delete: a claim that lapsed is never touched again.
_OWNED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


class Claim:
    """Which instance confirms a deploy: short-lived and refreshed, so that if it dies (a crash
    loop's first instance) another instance of the release takes over within CLAIM_TTL."""

    def __init__(self, client: redis.Redis, key: str, me: str) -> None:
        self.client, self.key, self.me = client, key, me
        self._owned = client.register_script(_OWNED)
        self._next = time.monotonic() + CLAIM_RETRY

    @classmethod
    def take(cls, client: redis.Redis, key: str, me: str) -> Claim | None:
        """The claim, or None when another instance holds it."""
        taken = client.set(key, me, nx=True, px=round(CLAIM_TTL * 1000))
        return cls(client, key, me) if taken else None

    def still_mine(self) -> bool:
        """Extend the claim, at most every CLAIM_RETRY seconds; True even if it lapsed (this
        instance goes on to its verdict, whoever took the claim over)."""
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + CLAIM_RETRY
            self._owned(keys=[self.key], args=[self.me, round(CLAIM_TTL * 1000)])
        return True

    def release(self) -> None:
        """Delete the claim if still ours."""
        self._owned(keys=[self.key], args=[self.me, 0])


class Confirmation:
    """One instance's confirmation of a release-phase deploy."""

    def __init__(
        self, client: redis.Redis, settings: Settings, identity: Identity, awaiting: Awaiting
    ) -> None:
        self.control = ControlClient(settings, client=client, sender="confirm")
        self.awaiting, self.signer = awaiting, Signer.from_settings(settings)
        self.who = f"{identity.dyno or identity.process_type} ({identity.instance_id})"
        self.result = DeployResult(
            commit=awaiting.commit,
            from_releases=awaiting.from_releases,
            to_releases=(awaiting.release,),
        )

    def run(self, claim: Claim, stopping: threading.Event) -> Verdict | None:
        """Up record, verification under the handed-over lock, fences kept, verdict record."""
        app, awaiting = self.control.app, self.awaiting
        logger.info("release %s is up: confirming deploy %s", awaiting.release, awaiting.deploy_id)
        self._record(UP, 0, None, {})
        holder = Holder(
            awaiting.deploy_id, self.who, awaiting.commit, server_now(self.control.client)
        )
        lock = DeployLock.adopt(self.control.client, app, holder, self.signer)
        try:
            verdict = self._verify(lock, stopping, claim)
        finally:
            lock.release()
        if stopping.is_set():  # the host is stopping: another instance takes it up
            return None
        # Answered (or superseded by a newer deploy): no other instance takes it up again.
        self.control.client.delete(Keys(app).deploy_awaiting(awaiting.release))
        return verdict

    def _verify(self, lock: DeployLock, stopping: threading.Event, claim: Claim) -> Verdict | None:
        error, verdict = None, None
        started = time.monotonic()
        try:
            verdict = verify_release(
                self.control, self.awaiting.spec(), _LogReporter(), self.result,
                stop=lambda: not claim.still_mine() or stopping.is_set() or not lock.still_mine(),
            )  # fmt: skip
        except VerifyFailed as exc:
            error = str(exc)
            logger.warning("release %s failed its verification: %s", self.awaiting.release, exc)
        self.result.phases_s["verify"] = time.monotonic() - started
        if self.result.verdict.get("stopped"):
            if stopping.is_set():
                return verdict
            self._record(
                "superseded", 0, "a newer deploy took the deploy lock", self.result.verdict
            )
            return verdict
        if self.result.verdict.get("new_seen"):
            self.result.undo = self._keep_fences()
        if error is not None and self.result.undo:
            old = ", ".join(self.awaiting.from_releases)
            error = f"{error}; {old} stays fenced; to undo: {self.result.undo}"
        self._record(FAILED if error else OK, VerifyFailed.exit_code if error else 0, error,
                     self.result.verdict)  # fmt: skip
        return verdict

    def _keep_fences(self) -> str | None:
        """The new release came up: the old one's zombies never resume (a day, as deploy)."""
        fences = FenceStore(self.control.client, self.control.app, self.signer)
        return keep_fences(
            self.control,
            fences,
            self.awaiting.from_releases,
            self.awaiting.deploy_id,
            types=self.awaiting.process_types,
            drain_deadline=self.awaiting.drain_deadline,
            reporter=_LogReporter(),
        )

    def _record(self, verdict: str, code: int, error: str | None, seen: dict[str, Any]) -> None:
        awaiting = self.awaiting
        entry = {
            "id": awaiting.deploy_id,
            "who": self.who,
            "source": SOURCE,
            "from": list(awaiting.from_releases),
            "to": [awaiting.release],
            "commit": awaiting.commit,
            "phases_s": {k: round(v, 3) for k, v in self.result.phases_s.items()},
            "verdict": verdict,
            "exit_code": code,
            "error": error,
            "verify": seen,
            "undo": self.result.undo,
        }
        history.append(self.control.client, self.control.app, entry, self.signer)


def recorded_verdict(client: ControlClient, release: str, depth: int = 50) -> dict[str, Any] | None:
    """The newest verdict the instances of ``release`` recorded for a release-phase deploy."""
    signer = Signer.from_settings(client.settings)
    for record in history.recent(client.client, client.app, depth, signer):
        mine = record.get("source") == SOURCE and record.get("to") == [release]
        if mine and record.get("verdict") in (OK, FAILED):
            return record
    return None


class _LogReporter:
    """The confirmation's progress goes to the host's log (the release's own output)."""

    def step(self, name: str, text: str) -> None:
        logger.info("confirm %s: %s", name, text)

    def note(self, text: str) -> None:
        level = logging.WARNING if text.startswith("warning") else logging.INFO
        logger.log(level, "confirm: %s", text)

    def rows(self, rows: list[Row]) -> None:
        """Per-instance rows are for terminals."""

    def output(self, line: str) -> None:
        """No push here."""

    def close(self) -> None:
        """Nothing to tidy."""
