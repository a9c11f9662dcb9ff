"""The deploy fence: a release that is being replaced stays drained, even across restarts.

``drainctl deploy`` writes one key per drained release (``Keys.fence``) holding a :class:`Fence`
with its own expiry, so an interrupted deploy never leaves the app drained forever. Listeners
learn about it two ways, neither costing a command per heartbeat:

- a ``drain`` request from the deploy carries the fence in its arguments;
- an instance that starts (or re-registers) reads the key in the same pipeline as its
  registration, so a worker the platform restarts mid-deploy comes up drained.

A fenced listener refuses ``resume`` while the key exists (a zombie of an old release can never
take work again); the deploy lifts the fence by deleting the key before it resumes anyone.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

import redis

from drainctl.errors import ProtocolError
from drainctl.keys import Keys

if TYPE_CHECKING:
    from drainctl.signing import Signer

logger = logging.getLogger(__name__)

DEFAULT_FENCE_TTL = 15 * 60.0
# After a successful deploy the old release's fence is kept this long: zombies never resume.
KEPT_FENCE_TTL = 24 * 3600.0


@dataclass(frozen=True)
class Fence:
    """Release ``release`` of these process types is fenced until ``until`` (Redis time)."""

    release: str
    process_types: tuple[str, ...]
    until: float
    deploy_id: str

    def covers(self, release: str, process_type: str) -> bool:
        """Whether an instance of this release and type must stay drained."""
        return release == self.release and process_type in self.process_types

    def encode(self) -> str:
        """JSON, as stored in Redis and sent in drain arguments."""
        return json.dumps(asdict(self) | {"process_types": list(self.process_types)})

    def as_arg(self) -> dict[str, Any]:
        """The fence as one item of a drain request's ``fences`` argument."""
        return dict(json.loads(self.encode()))

    @classmethod
    def decode(cls, raw: bytes | str | dict[str, Any]) -> Fence:
        """Parse a stored or transmitted fence; raises ProtocolError when malformed."""
        try:
            body = raw if isinstance(raw, dict) else json.loads(raw)
            return cls(
                release=str(body["release"]),
                process_types=tuple(str(t) for t in body["process_types"]),
                until=float(body["until"]),
                deploy_id=str(body["deploy_id"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed fence: {exc}") from exc


# Compare-and-set / compare-and-delete on the fence's owner: a deploy that lost a race never
# rewrites or lifts the fence of the deploy that won.
_OWNED_SET = """
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
        self._owned = client.register_script(_OWNED_SET)

    def set(self, fence: Fence, ttl: float) -> None:
        """Write (or overwrite) the fence with its own expiry."""
        self.client.set(
            self.keys.fence(fence.release), self._stored(fence, ttl), px=round(ttl * 1000)
        )

    def _stored(self, fence: Fence, ttl: float) -> str:
        """The document as stored: signed (kind ``fence``) when a secret is set, so listeners
        can tell a deploy's fence from one anybody with write access to Redis made up."""
        if self.signer is None:
            return fence.encode()
        # The fence was made at until - ttl on the Redis clock: that is its signing time.
        return json.dumps(self.signer.sign(fence.as_arg(), "fence", fence.until - ttl))

    def get(self, release: str) -> Fence | None:
        """The fence on ``release``, or None (no key, or one that cannot be decoded)."""
        raw = self.client.get(self.keys.fence(release))
        try:
            return Fence.decode(raw) if raw is not None else None
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
    """The listener side: whether this instance is fenced, and until when."""

    def __init__(self, keys: Keys, release: str, process_type: str) -> None:
        self.key = keys.fence(release)
        self.release = release
        self.process_type = process_type
        self.fence: Fence | None = None
        self._lock = threading.Lock()

    @property
    def fenced(self) -> bool:
        """True while a fence holds this instance drained."""
        return self.fence is not None

    def observe(self, raw: bytes | str | dict[str, Any] | None) -> Change:
        """Take a fence read from Redis (None: no key) or carried by a drain request."""
        if raw is None:
            with self._lock:
                lifted, self.fence = self.fence is not None, None
            return Change.LIFTED if lifted else Change.NONE
        try:
            fence = Fence.decode(raw)
        except ProtocolError as exc:
            logger.warning("ignoring a fence: %s", exc)
            return Change.NONE
        if not fence.covers(self.release, self.process_type):
            return Change.NONE
        with self._lock:
            newly, self.fence = self.fence is None, fence
        if not newly:
            return Change.NONE
        logger.warning("release %s is fenced by deploy %s", fence.release, fence.deploy_id)
        return Change.FENCED

    def expired(self, now: float) -> bool:
        """True (once) when the fence's own expiry passed: the deploy never came back to lift it."""
        with self._lock:
            if self.fence is None or now < self.fence.until:
                return False
            self.fence = None
        logger.warning("the deploy fence on release %s expired; resuming", self.release)
        return True

    def refusal(self, client: redis.Redis) -> str | None:
        """Why a resume must be refused (the fence key still exists), else None and unfence."""
        if self.fence is None:
            return None
        if client.exists(self.key):
            return f"release {self.release} is fenced by a deploy; it stays drained"
        with self._lock:
            self.fence = None
        return None
