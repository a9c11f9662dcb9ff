"""The clock's schedule in Redis, so a new clock picks up where the old one stopped.

Two hashes per app, keyed by job id, times in epoch milliseconds:

- ``clock:last``: the latest scheduled run time that fired, written atomically with each fire's
  once-key (see ``drainctl.clock.lease``), so it is right even after a SIGKILL;
- ``clock:next``: the next run time each job would have had, written on drain and graceful exit.

And ``clock:drained``, the time the holder's drain began (see ``deploy_grace``), which expires
after the deploy grace and is deleted by the next holder when it reads it.

Both expire ``schedule_ttl`` seconds after the last write (default 7 days): a clock that stays down
longer than that starts from scratch. Writes are fenced: only the lease holder's token may save.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import redis

from drainctl.keys import Keys

DEFAULT_SCHEDULE_TTL = 7 * 24 * 3600.0

_SAVE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[2]) end
return (#ARGV - 2) / 2
"""

_MARK = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class StoredRun:
    """What Redis remembers of one job: its next run time and the last run time that fired."""

    next_ms: int | None = None
    last_ms: int | None = None


class ScheduleStore:
    """Reads and writes the persisted schedule of one app."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl: float = DEFAULT_SCHEDULE_TTL) -> None:
        self.client = client
        self.keys = keys
        self.ttl = max(1, round(ttl))
        self._save = client.register_script(_SAVE)
        self._mark = client.register_script(_MARK)

    def save(self, token: int, next_ms: Mapping[str, int]) -> int | None:
        """Replace the next run times; the count saved, or None if ``token`` lost the lease."""
        args: list[str | int] = [token, self.ttl]
        for job_id, ms in next_ms.items():
            args += [job_id, ms]
        keys = [self.keys.clock_lease, self.keys.clock_next, self.keys.clock_last]
        saved = int(cast(int, self._save(keys=keys, args=args)))
        return None if saved < 0 else saved

    def load(self) -> dict[str, StoredRun]:
        """Every job Redis remembers."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self.keys.clock_next)
        pipe.hgetall(self.keys.clock_last)
        nexts, lasts = (_decode(raw) for raw in pipe.execute())
        return {
            job_id: StoredRun(nexts.get(job_id), lasts.get(job_id))
            for job_id in sorted(nexts.keys() | lasts.keys())
        }

    def lasts(self) -> dict[str, int]:
        """The latest run time that fired, per job (what a standby follows)."""
        return _decode(cast("dict[bytes, bytes]", self.client.hgetall(self.keys.clock_last)))

    def mark_drained(self, token: int, at_ms: int, ttl: float) -> None:
        """Leave the time our drain began for the next holder's deploy grace (holder only)."""
        keys = [self.keys.clock_lease, self.keys.clock_drained]
        self._mark(keys=keys, args=[token, at_ms, max(1, round(ttl * 1000))])

    def take_drained(self) -> int | None:
        """The previous holder's drain time, if it left one; read once by the new holder."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.clock_drained)
        pipe.delete(self.keys.clock_drained)
        raw = pipe.execute()[0]
        return None if raw is None else int(raw)

    def forget(self, job_ids: Iterable[str]) -> None:
        """Drop jobs that no longer exist in the code."""
        ids = list(job_ids)
        if ids:
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(self.keys.clock_next, *ids)
            pipe.hdel(self.keys.clock_last, *ids)
            pipe.execute()


def _decode(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in raw.items()}
