"""One clock per app: a lease in Redis with a monotonic fencing token, and once-keys per fire.

The lease is a hash ``{token, instance, release, rank, acquired_at}`` that expires unless its
holder renews it. Tokens come from ``INCR`` on a counter, so each new holder gets a bigger one.
Every fire is claimed with one script that checks the caller still holds the current token and sets
a once-key per (job id, scheduled run time) with ``SET NX PX``: a clock that lost the lease learns
it at its very next fire, and even two clocks that both believe they hold it (split brain) cannot
fire the same scheduled run twice.

Who wins (decided atomically in Redis):

- a free (or expired) lease goes to whoever asks;
- a clock of a newer release takes the lease over at once; releases are ordered by their trailing
  number (Heroku's ``v42``); when either has no number, a clock of a *different* release takes
  over only when it starts (the last one deployed wins), never while polling;
- a clock that finds a newer release holding the lease is fenced: it never fires again;
- a clock of the same release stands by and takes over when the lease expires.

A SIGKILLed holder stops renewing; its key expires ``2/3 * ttl`` after its last renewal and
standbys poll every ``ttl / 6``, so another clock takes over within ``ttl`` of the kill.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

import redis

from drainctl.connection import REDIS_ERRORS
from drainctl.keys import Keys

logger = logging.getLogger(__name__)

FENCE_COUNTER_TTL = 30 * 24 * 3600
_TRAILING_NUMBER = re.compile(r"(\d+)$")

_ACQUIRE = """
local cur = redis.call('HMGET', KEYS[1], 'token', 'instance', 'release', 'rank')
local function grant()
  local token = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  local now = redis.call('TIME')
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'token', token, 'instance', ARGV[1], 'release', ARGV[2],
             'rank', ARGV[3], 'acquired_at', now[1] .. '.' .. string.format('%06d', now[2]))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'held', tostring(token), ARGV[1], ARGV[2]}
end
if not cur[1] then return grant() end
if cur[2] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'held', cur[1], cur[2], cur[3]}
end
local verdict = 'standby'
if cur[3] ~= ARGV[2] then
  if ARGV[3] ~= '' and cur[4] ~= '' and cur[4] then
    if tonumber(ARGV[3]) > tonumber(cur[4]) then return grant() end
    verdict = 'fenced'
  elseif ARGV[6] == '1' then
    return grant()
  else
    verdict = 'fenced'
  end
end
return {verdict, cur[1], cur[2], cur[3]}
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_CLAIM = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return {'lost'} end
local granted = {'ok'}
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
for i = 3, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local ms = ARGV[i + 2]
    granted[#granted + 1] = ms
    if tonumber(ms) > last then last = tonumber(ms) end
  end
end
if #granted > 1 then
  redis.call('HSET', KEYS[2], ARGV[3], string.format('%d', last))
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return granted
"""


class Verdict(str, Enum):
    """Where a clock stands with respect to the lease."""

    HELD = "held"
    STANDBY = "standby"
    FENCED = "fenced"


@dataclass(frozen=True)
class LeaseStatus:
    """The outcome of an acquisition attempt: our verdict and who holds the lease now."""

    verdict: Verdict
    token: int
    holder: str
    holder_release: str


def release_rank(release: str) -> int | None:
    """The number that orders releases (``v42`` -> 42), or None when there is none."""
    match = _TRAILING_NUMBER.search(release)
    return int(match.group(1)) if match else None


class Lease:
    """The Redis side of the lease: acquire or renew, release, claim a fire."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        instance_id: str,
        release: str,
        ttl: float,
        once_ttl: float,
        schedule_ttl: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.instance_id = instance_id
        self.release = release
        self.ttl = ttl
        self.period = ttl / 6
        self._key_ms = max(1, round(ttl * 2 / 3 * 1000))
        self._once_ms = max(1, round(once_ttl * 1000))
        self._schedule_ttl = max(1, round(schedule_ttl))
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._claim = client.register_script(_CLAIM)

    def acquire(self, *, starting: bool = False) -> LeaseStatus:
        """Take the lease if free or ours (renewing it), or take it over if we are newer."""
        rank = release_rank(self.release)
        raw = self._acquire(
            keys=[self.keys.clock_lease, self.keys.clock_fence],
            args=[
                self.instance_id,
                self.release,
                "" if rank is None else str(rank),
                self._key_ms,
                FENCE_COUNTER_TTL,
                "1" if starting else "0",
            ],
        )
        verdict, token, holder, holder_release = (_text(part) for part in raw)
        return LeaseStatus(Verdict(verdict), int(token), holder, holder_release)

    def release_lease(self, token: int) -> bool:
        """Delete the lease if ``token`` still holds it, so a successor need not wait."""
        return bool(self._release(keys=[self.keys.clock_lease], args=[token]))

    def claim(self, token: int, job_id: str, run_ms: list[int]) -> list[int] | None:
        """The run times (ms) that may fire now; None when ``token`` no longer holds the lease."""
        keys = [self.keys.clock_lease, self.keys.clock_last]
        keys += [self.keys.clock_once(job_id, ms) for ms in run_ms]
        args: list[Any] = [token, self._once_ms, job_id, self._schedule_ttl, *run_ms]
        raw = cast(list[bytes], self._claim(keys=keys, args=args))
        if _text(raw[0]) == "lost":
            return None
        return [int(ms) for ms in raw[1:]]


class LeaseKeeper:
    """Keeps or waits for the lease in a daemon thread; tells its owner when it changes hands.

    ``on_acquired(token)`` runs each time this process becomes the holder (or is confirmed as the
    holder after a refused fire), before it may fire again; ``on_lost(verdict)`` each time it stops
    being the holder. Both run in this thread only, so they never race each other. A fenced keeper
    stops for good.
    """

    def __init__(
        self,
        lease: Lease,
        on_acquired: Callable[[int], None],
        on_lost: Callable[[Verdict], None],
    ) -> None:
        self.lease = lease
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.token: int | None = None
        self.verdict = Verdict.STANDBY
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._recheck = False
        self._outage = False
        self._thread = threading.Thread(target=self._run, name="drainctl-lease", daemon=True)

    def start(self) -> None:
        """Start the thread (its first attempt takes over from an older release)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; the lease itself is left as is (see ``release``)."""
        self._stop.set()
        self._wake.set()

    def release(self) -> None:
        """Give the lease up (graceful exit) so a successor need not wait; safe when not holding."""
        self.stop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        token, self.token = self.token, None
        if token is None:
            return
        try:
            self.lease.release_lease(token)
        except REDIS_ERRORS as exc:
            logger.warning("could not release the clock lease (it will expire): %s", exc)

    def recheck(self) -> None:
        """A fire was refused (lease lost, or Redis failed): re-check the lease at once."""
        self._recheck = True
        self._wake.set()

    def _run(self) -> None:
        starting = True
        while not self._stop.is_set():
            try:
                status = self.lease.acquire(starting=starting)
            except REDIS_ERRORS as exc:
                self._outage_failed(exc)
            else:
                starting = False
                self._outage_ended()
                if not self._safely_apply(status):
                    return
            self._wake.wait(self.lease.period)
            self._wake.clear()

    def _safely_apply(self, status: LeaseStatus) -> bool:
        """Apply a status; False once fenced. A failing callback never ends the thread."""
        try:
            self._apply(status)
        except REDIS_ERRORS as exc:
            self._outage_failed(exc)
        except Exception:
            logger.exception("clock lease callback failed; retrying")
            self._outage_failed(None)
        return status.verdict is not Verdict.FENCED

    def _apply(self, status: LeaseStatus) -> None:
        before, recheck = self.token, self._recheck
        self._recheck = False
        self.verdict = status.verdict
        if status.verdict is Verdict.HELD:
            self.token = status.token
            if status.token != before or recheck:
                logger.info("clock lease held (token %d)", status.token)
                self.on_acquired(status.token)
            return
        self.token = None
        if status.verdict is Verdict.FENCED:
            logger.warning(
                "clock fenced: release %s (%s) holds the lease; this clock never fires again",
                status.holder_release,
                status.holder,
            )
        if before is not None or status.verdict is Verdict.FENCED:
            self.on_lost(status.verdict)

    def _outage_failed(self, exc: BaseException | None) -> None:
        if exc is not None and not self._outage:
            self._outage = True
            logger.warning("clock lease: Redis unreachable (%s); not firing until it is back", exc)
        # Without Redis no fire can be claimed anyway; when it is back, restore before firing.
        if self.token is not None:
            self.token = None
            self.on_lost(Verdict.STANDBY)

    def _outage_ended(self) -> None:
        if self._outage:
            self._outage = False
            logger.warning("clock lease: Redis is back")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
