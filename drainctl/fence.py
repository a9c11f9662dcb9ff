"""The deploy fence: a release that is being replaced stays drained, even across restarts.

``drainctl deploy`` writes one key per drained release (``Keys.fence``) holding a :class:`Fence`
with its own expiry (``until``, on the Redis server's clock) and the drain deadline the deploy
gave; with a secret set the document is signed. Listeners learn about it two ways, neither
costing a command per heartbeat:

- a ``drain`` request from the deploy carries the fence in its (signed) arguments;
- an instance that starts (or re-registers) reads the key in the same pipeline as its
  registration, so a worker the platform restarts mid-deploy comes up drained, and drains with
  the deploy's deadline.

A fence is lifted only by an act: a ``resume`` once the deploy (or ``drainctl unfence``) deleted
the key, or the passing of the ``until`` written inside it, confirmed by reading the key again (a
deploy that succeeded keeps the fence by rewriting it with a later ``until``). A key that is
missing before that (deleted by hand, evicted under memory pressure, Redis restarted empty) lifts
nothing: the listener stays drained, logs a warning and says so in its heartbeat
(``fence_missing``). A fence that fails authentication is ignored as if it were not there.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any

import redis

from drainctl.errors import ProtocolError
from drainctl.keys import Keys
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

DEFAULT_FENCE_TTL = 15 * 60.0
# After a successful deploy the old release's fence is kept this long: zombies never resume.
KEPT_FENCE_TTL = 24 * 3600.0
# The drain deadline of a fence written without one.
DEFAULT_FENCE_DEADLINE = 25.0
SIGNED_KIND = "fence"


@dataclass(frozen=True)
class Fence:
    """Release ``release`` of these process types is fenced until ``until`` (Redis time)."""

    release: str
    process_types: tuple[str, ...]
    until: float
    deploy_id: str
    # How long an instance that finds the fence at registration may finish its work in flight.
    drain_deadline: float = DEFAULT_FENCE_DEADLINE

    def covers(self, release: str, process_type: str) -> bool:
        """Whether an instance of this release and type must stay drained."""
        return release == self.release and process_type in self.process_types

    def as_arg(self) -> dict[str, Any]:
        """The fence as a JSON object: one item of a drain request's ``fences`` argument."""
        return asdict(self) | {"process_types": list(self.process_types)}

    def encode(self, signer: Signer | None = None, now: float = 0.0) -> str:
        """JSON as stored in Redis; signed (at ``now``, server time) when a signer is given."""
        body = self.as_arg()
        return json.dumps(body if signer is None else signer.sign(body, SIGNED_KIND, now))

    @classmethod
    def decode(cls, raw: bytes | str | dict[str, Any], signer: Signer | None = None) -> Fence:
        """Parse a stored or transmitted fence; raises ProtocolError when malformed, or (with a
        signer) when its signature does not check out."""
        try:
            body = raw if isinstance(raw, dict) else json.loads(raw)
            if signer is not None:
                signer.authenticate(body, SIGNED_KIND)
            deadline = float(body.get("drain_deadline", DEFAULT_FENCE_DEADLINE))
            if not 0 <= deadline < float("inf"):
                raise ValueError(f"drain_deadline {deadline!r}")
            return cls(
                release=str(body["release"]),
                process_types=tuple(str(t) for t in body["process_types"]),
                until=float(body["until"]),
                deploy_id=str(body["deploy_id"]),
                drain_deadline=deadline,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"malformed fence: {exc}") from exc


# Compare-and-set / compare-and-delete on a JSON document's ``deploy_id`` (a fence, the deploy
# lock): a deploy that lost a race never rewrites or lifts what the deploy that won wrote.
OWNED_BY_DEPLOY = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, doc = pcall(cjson.decode, current)
if not ok or type(doc) ~= 'table' or doc['deploy_id'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class FenceStore:
    """The requester side: set, keep and lift fences (used by the deploy orchestrator)."""

    def __init__(self, client: redis.Redis, app: str, signer: Signer | None = None) -> None:
        self.client = client
        self.keys = Keys(app)
        self.signer = signer
        self._owned = client.register_script(OWNED_BY_DEPLOY)

    def set(self, fence: Fence, ttl: float) -> None:
        """Write (or overwrite) the fence with its own expiry, signed when a secret is set."""
        self.client.set(
            self.keys.fence(fence.release), self._stored(fence, ttl), px=round(ttl * 1000)
        )

    def _stored(self, fence: Fence, ttl: float) -> str:
        # The fence was made at until - ttl on the Redis clock: that is its signing time.
        return fence.encode(self.signer, fence.until - ttl)

    def get(self, release: str) -> Fence | None:
        """The fence on ``release``, or None (no key, or one that is malformed or forged)."""
        raw = self.client.get(self.keys.fence(release))
        try:
            return Fence.decode(raw, self.signer) if raw is not None else None
        except ProtocolError:
            return None

    def keep(self, release: str, deploy_id: str, now: float, ttl: float = KEPT_FENCE_TTL) -> bool:
        """Extend this deploy's fence after a successful deploy, so zombies never resume.

        The ``until`` inside the document moves too: listeners resume when it passes, whatever
        the key's own expiry. False when the fence is gone or belongs to another deploy.
        """
        fence = self.get(release)
        if fence is None or fence.deploy_id != deploy_id:
            return False
        kept = replace(fence, until=now + ttl)
        stored = self._stored(kept, ttl)
        return bool(self._owned(keys=[self.keys.fence(release)],
                                args=[deploy_id, stored, round(ttl * 1000)]))  # fmt: skip

    def lift(self, releases: list[str], deploy_id: str) -> int:
        """Delete this deploy's fences (before resuming the instances they held); a fence set by
        another deploy stays. Returns how many were lifted."""
        return sum(
            int(self._owned(keys=[self.keys.fence(r)], args=[deploy_id, "", 0])) for r in releases
        )

    def lift_any(self, releases: list[str]) -> int:
        """Delete the fences whoever set them (``drainctl unfence``); how many existed."""
        return int(self.client.delete(*(self.keys.fence(r) for r in releases))) if releases else 0

    def fenced_releases(self) -> list[str]:
        """Every release of the app that has a fence now."""
        prefix = self.keys.fence("")
        return sorted(
            key.decode()[len(prefix) :] if isinstance(key, bytes) else str(key)[len(prefix) :]
            for key in self.client.scan_iter(match=prefix + "*", count=100)
        )


class Change(Enum):
    """What a fence observation means for the listener."""

    NONE = "none"
    FENCED = "fenced"
    LIFTED = "lifted"


class FenceGuard:
    """The listener side: whether this instance is fenced, until when, and whether its key is
    still where the deploy wrote it."""

    def __init__(
        self, keys: Keys, release: str, process_type: str, signer: Signer | None = None
    ) -> None:
        self.key = keys.fence(release)
        self.release = release
        self.process_type = process_type
        self.signer = signer
        self.fence: Fence | None = None
        # The key vanished before the fence's own expiry (deleted, evicted, Redis restarted).
        self.missing = False
        self._lock = threading.Lock()

    @property
    def fenced(self) -> bool:
        """True while a fence holds this instance drained."""
        return self.fence is not None

    def observe(self, raw: bytes | str | dict[str, Any] | None, *, signed: bool = False) -> Change:
        """Take a fence read from Redis (None: no key) or carried by a (``signed``) request.

        A missing key never lifts a fence; it only sets ``missing``.
        """
        fence = self._covering(raw, signed=signed)
        with self._lock:
            if fence is None:
                if self.fence is not None and raw is None and not self.missing:
                    self.missing = True
                    logger.warning(
                        "the fence key of release %s is gone before its expiry (deleted or "
                        "evicted): staying drained until %s, or until a resume",
                        self.release,
                        self.fence.until,
                    )
                return Change.NONE
            newly = self.fence is None
            if newly or fence.until > self.fence.until:  # type: ignore[union-attr]
                self.fence = fence
            self.missing = False
        if not newly:
            return Change.NONE
        logger.warning("release %s is fenced by deploy %s", fence.release, fence.deploy_id)
        return Change.FENCED

    def due(self, now: float) -> bool:
        """True when the fence's own expiry has passed: time to check its key again."""
        fence = self.fence
        return fence is not None and now >= fence.until

    def confirm_expiry(self, raw: bytes | None, now: float) -> Change:
        """After ``due``: lift unless the key holds a covering fence that lasts longer (kept)."""
        fence = self._covering(raw)
        with self._lock:
            if fence is not None and fence.until > now:
                self.fence, self.missing = fence, False
                return Change.NONE
            if self.fence is None or now < self.fence.until:
                return Change.NONE
            self.fence, self.missing = None, False
        logger.warning("the deploy fence on release %s expired; resuming", self.release)
        return Change.LIFTED

    def refusal(self, client: redis.Redis) -> str | None:
        """Why a resume must be refused (the key still holds a live fence), else None, lifted."""
        if self.fence is None:
            return None
        fence = self._covering(client.get(self.key))
        if fence is not None:
            return (
                f"release {self.release} is fenced by deploy {fence.deploy_id}; it stays "
                "drained (`drainctl unfence` lifts the fence)"
            )
        with self._lock:
            self.fence, self.missing = None, False
        return None

    def _covering(
        self, raw: bytes | str | dict[str, Any] | None, *, signed: bool = False
    ) -> Fence | None:
        if raw is None:
            return None
        try:
            fence = Fence.decode(raw, None if signed else self.signer)
        except ProtocolError as exc:
            logger.warning("ignoring the fence on release %s: %s", self.release, exc)
            return None
        return fence if fence.covers(self.release, self.process_type) else None
