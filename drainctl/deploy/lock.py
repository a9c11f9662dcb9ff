"""One deploy at a time per app: a lock in Redis naming its holder.

The holder (deploy id, user@host, commit, start time on the Redis clock) is a JSON document
under ``Keys.deploy_lock`` with a short expiry that a thread refreshes while the deploy runs, so
a deployer that vanishes (laptop closed, SIGKILL) frees it within ``LOCK_TTL``. Every change is
a compare-and-set on the deploy id: a deploy never refreshes or releases another's lock.

The pre-push hook's background verify holds the lock in phase ``verify``: a newer deploy may
take such a lock over (the user pushed again), and the old verify stops when it sees that.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis

from drainctl.errors import DeployLocked, ProtocolError
from drainctl.fence import OWNED_BY_DEPLOY
from drainctl.keys import Keys
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

LOCK_TTL = 30.0
REFRESH_EVERY = 5.0
WAIT_POLL = 0.5
VERIFY_PHASE = "verify"

# {1}: taken; {2, the verify's doc}: taken over from a background verify; {0, the holder's doc}:
# held by another deploy (read in the same step, so the refusal names who won the race).
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and doc['phase'] ~= 'verify' then return {0, current} end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {2, current}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1}
"""


@dataclass(frozen=True)
class Holder:
    """Who holds the deploy lock."""

    deploy_id: str
    who: str
    commit: str
    started: float
    phase: str = "deploy"

    @classmethod
    def me(cls, deploy_id: str, commit: str, started: float) -> Holder:
        """This process's user@host as the holder."""
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # a container's arbitrary uid: no USER, no passwd entry
            user = f"uid{os.getuid()}"
        return cls(deploy_id, f"{user}@{socket.gethostname()}", commit, started)

    def describe(self, now: float) -> str:
        """One line: ``deploy ID by user@host of COMMIT, started N s ago (phase)``."""
        return (
            f"deploy {self.deploy_id} by {self.who} of {self.commit[:12] or '?'}, started "
            f"{max(0.0, now - self.started):.0f}s ago ({self.phase})"
        )


def decode_holder(raw: bytes | str | None, signer: Signer | None) -> Holder | None:
    """The holder in a stored lock; ProtocolError when malformed or (with a secret) unsigned."""
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        if signer is not None:
            signer.authenticate(body, "lock")
        fields = {name: body[name] for name in ("deploy_id", "who", "commit", "started", "phase")}
        return Holder(**{k: str(v) for k, v in fields.items() if k != "started"},
                      started=float(fields["started"]))  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed deploy lock: {exc}") from exc


def read_holder(client: redis.Redis, app: str, signer: Signer | None) -> Holder | None:
    """The deploy in progress, if any (an unverifiable lock reads as an unknown holder)."""
    return _holder_or_unknown(client.get(Keys(app).deploy_lock), signer)


def _holder_or_unknown(raw: bytes | str | None, signer: Signer | None) -> Holder | None:
    try:
        return decode_holder(raw, signer)
    except ProtocolError:
        return Holder("?", "an unverified holder", "", 0.0)


def server_now(client: redis.Redis) -> float:
    """Now on the Redis server's clock."""
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


class DeployLock:
    """The lock as held by one deploy: acquire, keep refreshed, hand over, release."""

    def __init__(
        self, client: redis.Redis, app: str, holder: Holder, signer: Signer | None = None
    ) -> None:
        self.client, self.app, self.holder, self.signer = client, app, holder, signer
        self.key = Keys(app).deploy_lock
        self._acquire = client.register_script(_ACQUIRE)
        self._owned = client.register_script(OWNED_BY_DEPLOY)
        self.lost = threading.Event()
        self._next_check = 0.0

    @classmethod
    def adopt(
        cls, client: redis.Redis, app: str, mine: Holder, signer: Signer | None = None
    ) -> DeployLock:
        """Hold a lock handed over by the deploy ``mine.deploy_id`` (phase verify): taken back if
        the hand-over expired meanwhile; already ``lost`` when another deploy holds it now."""
        current = read_holder(client, app, signer)
        if current is not None and current.deploy_id == mine.deploy_id:
            mine = current
        lock = cls(client, app, replace(mine, phase=VERIFY_PHASE), signer)
        if current is not None:
            lock.refresh()  # another deploy's already: lost, and the verify stops at once
            return lock
        try:
            lock.acquire()
        except DeployLocked:
            lock.lost.set()
        return lock

    def acquire(self, wait: float = 0.0) -> Holder | None:
        """Take the lock, waiting up to ``wait`` seconds; the background verify it took over
        from, if any. Raises DeployLocked naming the holder when it stays taken."""
        deadline = time.monotonic() + wait
        while True:
            taken, *current = self._acquire(keys=[self.key], args=[self._doc(), _ms(LOCK_TTL)])
            before = _holder_or_unknown(current[0] if current else None, self.signer)
            if taken:
                return before if taken == 2 else None
            if time.monotonic() >= deadline:
                now = server_now(self.client)
                held = before.describe(now) if before else "another deploy"
                raise DeployLocked(
                    f"another deploy is in progress: {held}; wait for it, or pass --wait-lock "
                    f"SECONDS (`drainctl --app {self.app} status` shows it)"
                )
            time.sleep(WAIT_POLL)

    def refresh(self, phase: str | None = None) -> bool:
        """Extend the lock (optionally moving to ``phase``); False once another deploy has it."""
        if phase is not None:
            self.holder = replace(self.holder, phase=phase)
        kept = self._owned(
            keys=[self.key], args=[self.holder.deploy_id, self._doc(), _ms(LOCK_TTL)]
        )
        if not kept:
            self.lost.set()
        return bool(kept)

    def still_mine(self) -> bool:
        """Refresh at most every REFRESH_EVERY seconds; False for good once the lock was lost.

        A lock found missing is lost too: a newer deploy may have taken it and finished since.
        """
        now = time.monotonic()
        if now >= self._next_check and not self.lost.is_set():
            self._next_check = now + REFRESH_EVERY
            self.refresh()
        return not self.lost.is_set()

    def release(self) -> None:
        """Delete the lock if this deploy still holds it."""
        self._owned(keys=[self.key], args=[self.holder.deploy_id, "", 0])

    @contextlib.contextmanager
    def refreshed(self) -> Iterator[threading.Event]:
        """Refresh in a daemon thread while the block runs; yields the ``lost`` event."""
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(REFRESH_EVERY):
                try:
                    if not self.refresh():
                        logger.warning("the deploy lock was taken by another deploy")
                        return
                except redis.RedisError as exc:  # an outage: the expiry covers a short one
                    logger.warning("could not refresh the deploy lock: %s", exc)

        thread = threading.Thread(target=keep, name="drainctl-deploy-lock", daemon=True)
        thread.start()
        try:
            yield self.lost
        finally:
            stop.set()

    def _doc(self) -> str:
        body: dict[str, Any] = asdict(self.holder)
        if self.signer is not None:
            body = self.signer.sign(body, "lock", server_now(self.client))
        return json.dumps(body)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
