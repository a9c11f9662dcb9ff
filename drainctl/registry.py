"""The registry of live instances: one heartbeat document per instance, indexed per app.

A heartbeat is a single ``SET key doc EX ttl XX``: one atomic command per beat (a hash would
need HSET plus EXPIRE). ``XX`` fails when the key is gone (expired during an outage, or Redis
restarted empty), which is the cue to register again. The index is a sorted set of instance ids
that readers prune of ids whose document expired, so no one ever needs ``KEYS`` or ``SCAN``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.typing import EncodableT

from drainctl.connection import Line, RawCommand
from drainctl.heartbeat import Checker, interval_of, seal
from drainctl.keys import Keys
from drainctl.redis_errors import script_errors
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

HEARTBEATS_PER_TTL = 3
STALE_AFTER_HEARTBEATS = 2
# The index outlives any single heartbeat; each live listener re-adds itself well within it.
INDEX_TTL = 3600
INDEX_REFRESH_EVERY = 60
# What an inbox of an instance found gone keeps, at most: requests in it expire well before.
ORPHAN_INBOX_TTL_MS = 3600 * 1000


@dataclass(frozen=True)
class InstanceRecord:
    """One live instance as read from the registry.

    ``verified`` is True when its heartbeat document carries a valid signature, False when a
    secret is set and it does not (``doubt`` says why), None when there is no secret to check.
    """

    doc: dict[str, Any]
    age: float
    verified: bool | None = None
    doubt: str = ""

    @property
    def instance_id(self) -> str:
        """The instance's unique id."""
        return str(self.doc.get("instance_id", "?"))

    @property
    def process_type(self) -> str:
        """Its process type (clock, worker, ...)."""
        return str(self.doc.get("process_type", "?"))

    @property
    def oneoff(self) -> bool:
        """True for a one-off process (``drainctl run``): its heartbeat carries its ``command``.

        A deploy lists one-offs apart (``--one-offs``) and never expects them back: a platform
        restarts no one-off.
        """
        return "command" in self.doc

    @property
    def interval(self) -> float:
        """The heartbeat interval the instance announced (the default if it makes no sense)."""
        return interval_of(self.doc)

    @property
    def trusted(self) -> bool:
        """False for a document that failed the signature check: never counted, never awaited."""
        return self.verified is not False

    @property
    def stale(self) -> bool:
        """True when the last beat is older than two intervals but the entry has not expired."""
        return self.age > STALE_AFTER_HEARTBEATS * self.interval

    @property
    def label(self) -> str:
        """``dyno (instance id)`` for messages."""
        return f"{self.doc.get('dyno') or self.process_type} ({self.instance_id})"

    def as_dict(self) -> dict[str, Any]:
        """The heartbeat document plus ``age``, ``stale`` and ``verified``."""
        extra = {"age": round(self.age, 3), "stale": self.stale, "verified": self.verified}
        return self.doc | extra | ({"unverified": self.doubt} if self.doubt else {})


@dataclass(frozen=True)
class Registered:
    """A (re)registration happened; ``read`` holds the extra key fetched with it, if any."""

    read: bytes | None


# How long an app counts as known after its last listener registered (listeners re-register
# every few minutes while they run).
APPS_TTL = 86400


def known_apps(client: redis.Redis) -> list[str]:
    """Apps whose listeners registered on this Redis within ``APPS_TTL``, sorted."""
    names = client.zrange(Keys("").apps, time.time() - APPS_TTL, "+inf", byscore=True)
    return sorted(_text(name) for name in cast(list[bytes], names))


class Registry:
    """Reads and writes the live-instance registry of one app."""

    def __init__(
        self,
        client: redis.Redis,
        app: str,
        signer: Signer | None = None,
        *,
        index_apps: bool = True,
    ) -> None:
        self.client = client
        self.keys = Keys(app)
        # The app index is one key for every app: on a Cluster it lives in another slot, on
        # another master than the app's own keys, so it is not kept there.
        self.index_apps = index_apps
        # Listeners sign what they write with it; readers check what they read.
        self.signer = signer
        self.checker = Checker(signer)
        self._select = client.register_script(_SELECT)

    def register(self, doc: dict[str, Any], interval: float, read: str | None = None) -> Registered:
        """Write the document and (re)join the index; ``read`` is a key fetched in the same trip."""
        instance_id = doc["instance_id"]
        pipe = self.client.pipeline(transaction=False)
        pipe.set(*self._entry(doc), px=_ttl_ms(interval))
        pipe.zadd(self.keys.instances, {instance_id: doc.get("started_at", 0.0)})
        pipe.expire(self.keys.instances, INDEX_TTL)
        if read is not None:
            pipe.get(read)
        if self.index_apps:
            pipe.zadd(self.keys.apps, {self.keys.app: time.time()})
            pipe.expire(self.keys.apps, APPS_TTL)
        results = pipe.execute()
        return Registered(results[3] if read is not None else None)

    def beat(
        self,
        doc: dict[str, Any],
        interval: float,
        *,
        refresh_index: bool = False,
        read: str | None = None,
    ) -> Registered | None:
        """Refresh the document; registers again when the entry had vanished.

        Returns None for a plain refresh (one command), a :class:`Registered` when it registered.
        """
        if refresh_index:
            return self.register(doc, interval, read)
        key, value = self._entry(doc)
        if not self.client.set(key, value, px=_ttl_ms(interval), xx=True):
            logger.info("registry entry %s had expired; registering again", doc["instance_id"])
            return self.register(doc, interval, read)
        return None

    def refresh(self, doc: dict[str, Any], interval: float) -> RawCommand:
        """The plain beat as a raw command (nil when the entry had expired), for a round trip
        that carries other commands too."""
        return ("SET", *self._entry(doc), "PX", _ttl_ms(interval), "XX")

    def _entry(self, doc: dict[str, Any]) -> tuple[str, bytes]:
        return self.keys.instance(doc["instance_id"]), seal(doc, self.signer)

    def remove(self, instance_id: str) -> None:
        """Delete an instance's entry and inbox (on a clean stop)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.instance(instance_id), self.keys.inbox(instance_id))
        pipe.zrem(self.keys.instances, instance_id)
        pipe.execute()

    def live(
        self,
        process_types: set[str] | frozenset[str] | None = None,
        instance_id: str | None = None,
        *,
        deliver: bytes | None = None,
        inbox_ttl_ms: int = 0,
        line: Line | None = None,
        now: float | None = None,
    ) -> list[InstanceRecord]:
        """Live instances (optionally of some types, or one id prefix), oldest first.

        With ``deliver``, the same round trip also pushes that request into each selected
        instance's inbox: what is read and what is addressed cannot disagree. ``line`` runs it
        on a held connection (the requester's hot path). A delivery reads no key's TTL: ages
        then come from each document's ``beat_at`` against ``now`` (the server's clock).
        """
        keys = [self.keys.instances]
        args: list[EncodableT] = [
            self.keys.base,
            deliver or b"",
            inbox_ttl_ms,
            instance_id or "",
            *sorted(process_types or ()),
        ]
        if line is None:
            with script_errors(self._select):
                raw = self._select(keys, args)
        else:
            raw = line.script(self._select, keys, args)
        timed = not deliver
        records = []
        for key_id, doc_raw, pttl in zip(raw[::3], raw[1::3], raw[2::3], strict=True):
            checked = self.checker.check(_text(key_id), doc_raw)
            if checked is None:
                continue
            records.append(
                InstanceRecord(
                    checked.doc,
                    _age(checked.doc, pttl if timed else None, now),
                    checked.verified,
                    checked.doubt,
                )
            )
        return records


def _age(doc: dict[str, Any], pttl: int | None, now: float | None) -> float:
    """Seconds since the last beat: from the key's remaining TTL when read (immune to clock
    skew), else from the document's own beat time on the server's clock."""
    if pttl is not None:
        return max(0.0, (_ttl_ms(interval_of(doc)) - max(pttl, 0)) / 1000)
    beat_at = doc.get("beat_at")
    if now is None or not isinstance(beat_at, (int, float)):
        return 0.0
    return max(0.0, now - beat_at)


# Reads the index and every heartbeat document (one MGET per 1000 ids), prunes ids whose
# document expired (their inboxes get a TTL), filters by id prefix and process type, and
# optionally delivers a request to every selected inbox: one round trip for all of it.
# A delivery costs one command per inbox: an inbox whose listener is waiting on it is popped at
# once and needs no TTL. The push sets one only when requests are already queued there (the
# listener is not keeping up); a request that lands alone in the inbox of an instance that
# does not take it gets its TTL from the requester once it knows (ControlClient.send), and a
# gone instance's inbox gets one (ORPHAN_INBOX_TTL: a listener back from a long outage still
# finds what waits for it) when its entry is pruned. Reads without a delivery also return each
# document's remaining TTL (its age); deliveries return -1 there.
_SELECT = """
local base, payload, ttl, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local types = {}
for i = 5, #ARGV do types[ARGV[i]] = true end
local filter_types = #ARGV >= 5
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local docs = {}
for first = 1, #ids, 1000 do
  local keys = {}
  for i = first, math.min(first + 999, #ids) do keys[#keys + 1] = base .. 'instance:' .. ids[i] end
  local got = redis.call('MGET', unpack(keys))
  for i = 1, #got do docs[first + i - 1] = got[i] end
end
local out, gone = {}, {}
for i, id in ipairs(ids) do
  local doc = docs[i]
  if not doc then
    gone[#gone + 1] = id
    redis.call('PEXPIRE', base .. 'inbox:' .. id, ORPHAN_INBOX_TTL)
  elseif string.sub(id, 1, #prefix) == prefix then
    local wanted = not filter_types
    if filter_types then
      local ok, decoded = pcall(cjson.decode, doc)
      local ptype = ok and type(decoded) == 'table' and decoded['process_type'] or nil
      wanted = ptype ~= nil and types[ptype] ~= nil
    end
    if wanted then
      local left = -1
      if payload ~= '' then
        local inbox = base .. 'inbox:' .. id
        if redis.call('RPUSH', inbox, payload) > 1 then
          redis.call('PEXPIRE', inbox, ttl)
        end
      else
        left = redis.call('PTTL', base .. 'instance:' .. id)
      end
      out[#out + 1] = id
      out[#out + 1] = doc
      out[#out + 1] = left
    end
  end
end
for first = 1, #gone, 1000 do
  redis.call('ZREM', KEYS[1], unpack(gone, first, math.min(first + 999, #gone)))
end
return out
""".replace("ORPHAN_INBOX_TTL", str(ORPHAN_INBOX_TTL_MS))


def _ttl_ms(interval: float) -> int:
    return max(1, round(HEARTBEATS_PER_TTL * interval * 1000))


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw
