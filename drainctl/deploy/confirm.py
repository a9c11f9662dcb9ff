"""The release phase's verdict, given by the new release itself.

``drainctl release-phase`` drains the old release and exits, and nobody is left at a terminal to
verify. It leaves an :class:`Awaiting` record under ``Keys.deploy_awaiting(R)`` (signed with kind
``awaiting`` when a secret is set; it expires with the fence, ``--fence-ttl``). Every listener
calls :func:`confirm_in_background` once at start: one GET of that key for its own release, on a
daemon thread, through the listener's own connection pool (no extra connection). The first
instance to claim the deploy (``SET NX`` on ``Keys.deploy_confirm``) records in the history that
the new release is up, holds the deploy lock the release phase handed over, runs the verification
``drainctl deploy`` runs (:func:`verify_release`), keeps the old release's fences for a day once
an instance of the new release was seen (its zombies never resume), and records the verdict.
Nothing here raises into the host or blocks it.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any

import redis

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.deploy import history
from drainctl.deploy.draining import keep_fences
from drainctl.deploy.lock import DeployLock, Holder, server_now
from drainctl.deploy.orchestrator import verify_release
from drainctl.deploy.plan import UNKNOWN_RELEASE
from drainctl.deploy.progress import Row
from drainctl.deploy.result import FAILED, OK, DeployResult
from drainctl.deploy.verify import NewRelease, Verdict, VerifySpec
from drainctl.errors import ProtocolError, Unauthenticated, VerifyFailed
from drainctl.fence import FenceStore
from drainctl.identity import Identity
from drainctl.keys import Keys
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

SIGNED_KIND = "awaiting"
SOURCE = "app"
UP = "up"
# The claim outlives the longest verification by this much, should its instance die mid-way.
CLAIM_SLACK = 60.0


@dataclass(frozen=True)
class Awaiting:
    """A release phase's drained deploy: what the new release's instances must confirm."""

    deploy_id: str
    release: str
    commit: str
    from_releases: tuple[str, ...]
    process_types: tuple[str, ...]
    expect: dict[str, int]
    drained: tuple[str, ...]
    drain_deadline: float = 25.0
    stable_for: float = 10.0
    zombie_grace: float = 45.0
    verify_timeout: float = 120.0
    # Who ran the release phase (user@host of its dyno).
    who: str = ""

    def spec(self) -> VerifySpec:
        """Success as ``drainctl deploy`` means it: the expected counts, stable and alone."""
        return VerifySpec(
            new=NewRelease(release=self.release, old_instances=frozenset(self.drained)),
            required=dict(self.expect),
            stable_for=self.stable_for,
            zombie_grace=self.zombie_grace,
            timeout=self.verify_timeout,
        )

    def encode(self, signer: Signer | None, now: float) -> str:
        """JSON as stored; signed at ``now`` (Redis time) when a signer is given."""
        body = asdict(self)
        return json.dumps(body if signer is None else signer.sign(body, SIGNED_KIND, now))

    @classmethod
    def decode(cls, raw: bytes | str, signer: Signer | None) -> Awaiting:
        """Parse a stored record; ProtocolError when malformed or (with a secret) unsigned."""
        try:
            body = json.loads(raw)
            if signer is not None:
                signer.authenticate(body, SIGNED_KIND)
            names = cls.__dataclass_fields__
            fields = {k: v for k, v in body.items() if k in names}
            for name in ("from_releases", "process_types", "drained"):
                fields[name] = tuple(str(item) for item in fields[name])
            fields["expect"] = {str(k): int(v) for k, v in fields["expect"].items()}
            return cls(**fields)
        except Unauthenticated:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"malformed awaiting-confirmation record: {exc}") from exc


def publish(client: redis.Redis, app: str, awaiting: Awaiting, signer: Signer | None,
            ttl: float) -> None:  # fmt: skip
    """Leave the record for the new release's instances; it expires with the fence."""
    body = awaiting.encode(signer, server_now(client))
    client.set(Keys(app).deploy_awaiting(awaiting.release), body, px=round(ttl * 1000))


def read(client: redis.Redis, app: str, release: str, signer: Signer | None) -> Awaiting | None:
    """The release phase's record for ``release``, if one awaits (a forged one is ignored)."""
    raw = client.get(Keys(app).deploy_awaiting(release))
    if raw is None:
        return None
    try:
        return Awaiting.decode(raw, signer)
    except ProtocolError as exc:
        logger.warning("ignoring the awaiting-confirmation record of %s: %s", release, exc)
        return None


def confirm_in_background(client: redis.Redis, settings: Settings, identity: Identity) -> None:
    """Called once by every listener at start: never raises, never blocks (a daemon thread)."""
    if identity.release == UNKNOWN_RELEASE:
        return
    try:
        threading.Thread(
            target=_confirm_quietly,
            args=(client, settings, identity),
            name="drainctl-confirm",
            daemon=True,
        ).start()
    except Exception:  # e.g. no thread left to start: the host must not notice
        logger.exception("could not start the deploy confirmation")


def _confirm_quietly(client: redis.Redis, settings: Settings, identity: Identity) -> None:
    try:
        confirm(client, settings, identity)
    except Exception as exc:  # an outage, the listener stopping: the verdict stays unrecorded
        logger.warning("the deploy confirmation of release %s stopped: %s", identity.release, exc)


def confirm(client: redis.Redis, settings: Settings, identity: Identity) -> Verdict | None:
    """If a release phase awaits this instance's release and no other instance claimed it:
    record that the release is up, verify it, keep the old fences, record the verdict."""
    signer = Signer.from_settings(settings)
    awaiting = read(client, identity.app, identity.release, signer)
    if awaiting is None:
        return None
    claim = Keys(identity.app).deploy_confirm(awaiting.deploy_id)
    claim_ttl = awaiting.verify_timeout + awaiting.zombie_grace + CLAIM_SLACK
    if not client.set(claim, identity.instance_id, nx=True, px=round(claim_ttl * 1000)):
        return None
    try:
        return Confirmation(client, settings.replace(app=identity.app), identity, awaiting).run()
    finally:
        client.delete(claim)


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

    def run(self) -> Verdict | None:
        """Up record, verification under the handed-over lock, fences kept, verdict record."""
        app, awaiting = self.control.app, self.awaiting
        logger.warning(
            "release %s is up: confirming deploy %s", awaiting.release, awaiting.deploy_id
        )
        self._record(UP, 0, None, {})
        holder = Holder(
            awaiting.deploy_id, self.who, awaiting.commit, server_now(self.control.client)
        )
        lock = DeployLock.adopt(self.control.client, app, holder, self.signer)
        try:
            verdict = self._verify(lock)
        finally:
            lock.release()
        if verdict is None or not verdict.stopped:
            self.control.client.delete(Keys(app).deploy_awaiting(awaiting.release))
        return verdict

    def _verify(self, lock: DeployLock) -> Verdict | None:
        error, verdict = None, None
        try:
            verdict = verify_release(
                self.control, self.awaiting.spec(), _LogReporter(), self.result,
                stop=lambda: not lock.still_mine(),
            )  # fmt: skip
        except VerifyFailed as exc:
            error = str(exc)
            logger.warning("release %s failed its verification: %s", self.awaiting.release, exc)
        if self.result.verdict.get("stopped"):
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
            "phases_s": {},
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
