"""The registry of live instances: one heartbeat document per instance, indexed per app.

A heartbeat is a single ``SET key doc EX ttl XX``: one atomic command per beat (a hash would
need HSET plus EXPIRE). ``XX`` fails when the key is gone (expired during an outage, or Redis
restarted empty), which is the cue to register again. The index is a sorted set of instance ids
that readers prune of ids whose document expired, so no one ever needs ``KEYS`` or ``SCAN``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, cast

import redis

from drainctl.keys import Keys

logger = logging.getLogger(__name__)

HEARTBEATS_PER_TTL = 3
STALE_AFTER_HEARTBEATS = 2
# The index outlives any single heartbeat; each live listener re-adds itself well within it.
INDEX_TTL = 3600
INDEX_REFRESH_EVERY = 60


@dataclass(frozen=True)
class InstanceRecord:
    """One live instance as read from the registry."""

    doc: dict[str, Any]
    age: float

    @property
    def instance_id(self) -> str:
        """The instance's unique id."""
        return str(self.doc.get("instance_id", "?"))

    @property
    def process_type(self) -> str:
        """Its process type (clock, worker, ...)."""
        return str(self.doc.get("process_type", "?"))

    @property
    def interval(self) -> float:
        """The heartbeat interval the instance announced."""
        return float(self.doc.get("heartbeat_interval", 5.0))

    @property
    def stale(self) -> bool:
        """True when the last beat is older than two intervals but the entry has not expired."""
        return self.age > STALE_AFTER_HEARTBEATS * self.interval

    @property
    def label(self) -> str:
        """``dyno (instance id)`` for messages."""
        return f"{self.doc.get('dyno') or self.process_type} ({self.instance_id})"

    def as_dict(self) -> dict[str, Any]:
        """The heartbeat document plus ``age`` and ``stale``."""
        return self.doc | {"age": round(self.age, 3), "stale": self.stale}


class Registry:
    """Reads and writes the live-instance registry of one app."""

    def __init__(self, client: redis.Redis, app: str) -> None:
        self.client = client
        self.keys = Keys(app)

    def register(self, doc: dict[str, Any], interval: float) -> None:
        """Write the document and (re)join the index."""
        instance_id = doc["instance_id"]
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.instance(instance_id), _dump(doc), px=_ttl_ms(interval))
        pipe.zadd(self.keys.instances, {instance_id: doc.get("started_at", 0.0)})
        pipe.expire(self.keys.instances, INDEX_TTL)
        pipe.execute()

    def beat(self, doc: dict[str, Any], interval: float, *, refresh_index: bool = False) -> None:
        """Refresh the document; registers again when the entry had vanished."""
        if refresh_index:
            self.register(doc, interval)
            return
        key = self.keys.instance(doc["instance_id"])
        if not self.client.set(key, _dump(doc), px=_ttl_ms(interval), xx=True):
            logger.info("registry entry %s had expired; registering again", doc["instance_id"])
            self.register(doc, interval)

    def remove(self, instance_id: str) -> None:
        """Delete an instance's entry and inbox (on a clean stop)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.instance(instance_id), self.keys.inbox(instance_id))
        pipe.zrem(self.keys.instances, instance_id)
        pipe.execute()

    def live(self, process_types: set[str] | None = None) -> list[InstanceRecord]:
        """Instances whose heartbeat has not expired, oldest first; prunes expired ids."""
        ids = [_text(i) for i in cast(list[bytes], self.client.zrange(self.keys.instances, 0, -1))]
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for instance_id in ids:
            pipe.get(self.keys.instance(instance_id))
            pipe.pttl(self.keys.instance(instance_id))
        results = pipe.execute()
        records, gone = [], []
        for instance_id, raw, pttl in zip(ids, results[::2], results[1::2], strict=True):
            doc = _parse(raw)
            if doc is None:
                gone.append(instance_id)
                continue
            # Age from the key's remaining TTL, not from timestamps: immune to clock skew.
            ttl_ms = _ttl_ms(float(doc.get("heartbeat_interval", 5.0)))
            age = max(0.0, (ttl_ms - max(pttl, 0)) / 1000)
            record = InstanceRecord(doc=doc, age=age)
            if process_types is None or record.process_type in process_types:
                records.append(record)
        if gone:
            self.client.zrem(self.keys.instances, *gone)
        return records


def _ttl_ms(interval: float) -> int:
    return max(1, round(HEARTBEATS_PER_TTL * interval * 1000))


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        logger.warning("ignoring a registry entry that is not JSON")
        return None
    return doc if isinstance(doc, dict) else None
