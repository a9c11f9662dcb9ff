"""One clock per app: a lease in Redis with a monotonic fencing token, and once-keys per fire.

The lease is a hash ``{token, instance, release, rank, acquired_at}`` that expires unless its
holder renews it. Tokens come from ``INCR`` on a counter floored by the Redis server time in µs,
so each new holder gets a bigger one, even after Redis lost the counter (``lease_scripts``).
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

import json
import logging
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

import redis

from drainctl.clock.lease_scripts import ACQUIRE, CLAIM, RELEASE
from drainctl.errors import DrainctlError
from drainctl.keys import Keys
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

FENCE_COUNTER_TTL = 30 * 24 * 3600
# The holder's identity (instance, release, rank) is signed with this kind when a secret is set.
SIGNED_KIND = "lease"
_TRAILING_NUMBER = re.compile(r"(\d+)$")


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
    fresh: bool = False  # free, but Redis lost its data: the previous holder gets it first


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
        signer: Signer | None = None,
    ) -> None:
        self.client = client
        self.signer = signer
        self._holder_rank = ""
        self.keys = keys
        self.instance_id = instance_id
        self.release = release
        self.ttl = ttl
        self.period = ttl / 6
        self._key_ms = max(1, round(ttl * 2 / 3 * 1000))
        self._once_ms = max(1, round(once_ttl * 1000))
        self._schedule_ttl = max(1, round(schedule_ttl))
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._claim = client.register_script(CLAIM)

    def acquire(self, *, starting: bool = False, after_loss: bool = False) -> LeaseStatus:
        """Take the lease if free or ours (renewing it), or take it over if we are newer.

        After Redis lost its data the lease is free and the counter gone: only a ``starting``
        clock, or one passing ``after_loss`` (it held the lease, or waited its turn), takes it.
        With a secret, a holder whose signed identity fails the check (written by someone
        without the secret) neither fences this clock nor keeps it standing by: it is replaced.
        """
        status, holder_sig = self._attempt(starting, after_loss, forged="")
        if status.verdict is not Verdict.HELD and not self._authentic(status, holder_sig):
            logger.warning(
                "the clock lease names %s of release %s without a valid signature: replacing it",
                status.holder or "nobody",
                status.holder_release or "-",
            )
            status, _ = self._attempt(starting, after_loss, forged=holder_sig or "-")
        return status

    def _attempt(self, starting: bool, after_loss: bool, forged: str) -> tuple[LeaseStatus, str]:
        rank = release_rank(self.release)
        rank_text = "" if rank is None else str(rank)
        raw = self._acquire(
            keys=[self.keys.clock_lease, self.keys.clock_fence],
            args=[
                self.instance_id,
                self.release,
                rank_text,
                self._key_ms,
                FENCE_COUNTER_TTL,
                "1" if starting else "0",
                "1" if starting or after_loss else "0",
                self._signed_identity(self.instance_id, self.release, rank_text),
                forged,
            ],
        )
        verdict, token, holder, holder_release, fresh, sig, holder_rank = (
            _text(part) for part in raw
        )
        status = LeaseStatus(Verdict(verdict), int(token), holder, holder_release, fresh == "fresh")
        self._holder_rank = holder_rank
        return status, sig

    def _signed_identity(self, instance: str, release: str, rank: str) -> str:
        if self.signer is None:
            return ""
        body = {"instance": instance, "release": release, "rank": rank}
        return json.dumps(self.signer.sign(body, SIGNED_KIND, 0.0))

    def _authentic(self, status: LeaseStatus, sig: str) -> bool:
        """Whether the holder's identity was signed with our secret (always, without one)."""
        if self.signer is None or not status.holder:
            return True
        try:
            body = json.loads(sig)
            self.signer.authenticate(body, SIGNED_KIND)
        except (ValueError, TypeError, DrainctlError):
            return False
        claimed = (status.holder, status.holder_release, self._holder_rank)
        return (body.get("instance"), body.get("release"), body.get("rank")) == claimed

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
