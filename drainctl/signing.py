"""Signed control messages: HMAC-SHA256 over a canonical encoding, a timestamp and a nonce.

Anyone who can write to the app's Redis could otherwise tell every process to drain. With a
shared secret, every request and reply carries three more fields:

- ``ts``: when it was signed, on the Redis server's clock (see ``ServerClock``);
- ``nonce``: 128 random bits, so two identical commands never share a signature;
- ``sig``: hex HMAC-SHA256 of ``drainctl/{kind}\\n`` + the canonical JSON of every other field
  (keys sorted, no spaces, ASCII only), so the signature covers what the receiver parses, not
  the bytes, and a reply can never pass for a request.

Requests also carry ``to``, the target they were sent to (an instance id prefix and/or process
types, or null for the whole app), so a request for the clock cannot be replayed into a
worker's inbox. A listener rejects unsigned and wrongly signed messages, timestamps further
than ``max_skew`` from its clock, and nonces it has seen (remembered in Redis with ``SET NX PX``
until the message could no longer pass the timestamp and expiry checks anyway). Requesters check
replies the same way except for the nonce: a reply is bound to its request by ``request_id``.

Several secrets can be configured for rotation: sign with the first, accept any.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets as _random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from drainctl.config import Settings
from drainctl.connection import REDIS_ERRORS, ServerClock
from drainctl.errors import Unauthenticated
from drainctl.keys import Keys

# A nonce is kept a little past the moment its message would be refused anyway.
NONCE_MARGIN = 1.0
_AUTH_FIELDS = ("ts", "nonce", "sig")


@dataclass(frozen=True)
class Stamp:
    """The verified authentication fields of a message."""

    ts: float
    nonce: str


def canonical(body: dict[str, Any], kind: str) -> bytes:
    """What is signed: the message kind, then the sorted JSON of every field but ``sig``."""
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    try:
        text = json.dumps(
            unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise Unauthenticated(f"message has no canonical encoding: {exc}") from None
    return f"drainctl/{kind}\n{text}".encode()


class Signer:
    """Signs with the first secret and accepts a signature made with any of them."""

    def __init__(self, secrets: Sequence[str], max_skew: float = 60.0) -> None:
        if not secrets:
            raise ValueError("a Signer needs at least one secret")
        self._keys = [s.encode() for s in secrets]
        self.max_skew = max_skew

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer | None:
        """A signer for the configured secrets, or None when messages go unsigned."""
        return cls(settings.secrets, settings.max_skew) if settings.secrets else None

    def __repr__(self) -> str:
        return f"Signer(<{len(self._keys)} secrets>, max_skew={self.max_skew})"

    def sign(self, body: dict[str, Any], kind: str, now: float) -> dict[str, Any]:
        """``body`` plus ``ts``, ``nonce`` and ``sig``."""
        sealed = dict(body, ts=now, nonce=_random.token_hex(16))
        sealed["sig"] = self._mac(self._keys[0], canonical(sealed, kind))
        return sealed

    def verify(self, body: dict[str, Any], kind: str, now: float, to: str | None = None) -> Stamp:
        """The message's stamp; raises Unauthenticated (never naming a secret) to reject it."""
        stamp = self.authenticate(body, kind)
        ts = stamp.ts
        if abs(now - ts) > self.max_skew:
            raise Unauthenticated(
                f"timestamp is {now - ts:+.1f} s off the server clock (max {self.max_skew:g} s)"
            )
        return stamp

    def authenticate(self, body: dict[str, Any], kind: str) -> Stamp:
        """Check the signature alone (no clock): for state kept in Redis, such as a heartbeat
        document or a fence, which outlives the skew window; raises Unauthenticated."""
        ts, nonce, sig = (body.get(name) for name in _AUTH_FIELDS)
        if sig is None:
            raise Unauthenticated("unsigned")
        ts = finite(ts)
        if not isinstance(sig, str) or not isinstance(nonce, str) or ts is None:
            raise Unauthenticated("malformed ts, nonce or sig")
        signed = canonical(body, kind)
        if not any(hmac.compare_digest(sig, self._mac(key, signed)) for key in self._keys):
            raise Unauthenticated("bad signature")
        return Stamp(ts=ts, nonce=nonce)

    @staticmethod
    def _mac(key: bytes, message: bytes) -> str:
        return hmac.new(key, message, hashlib.sha256).hexdigest()


class NonceStore:
    """Remembers the nonces an instance accepted, in Redis, until they could not pass anyway."""

    def __init__(self, client: redis.Redis, keys: Keys, instance_id: str) -> None:
        self.client = client
        self.keys = keys
        self.instance_id = instance_id

    def claim(self, nonce: str, until: float, now: float) -> None:
        """Record ``nonce`` until ``until`` (server clock); raises Unauthenticated if seen."""
        ttl_ms = max(1, round((until - now + NONCE_MARGIN) * 1000))
        key = self.keys.nonce(self.instance_id, nonce)
        try:
            fresh = self.client.set(key, b"", nx=True, px=ttl_ms)
        except REDIS_ERRORS as exc:
            # Fail closed: a request whose replay cannot be ruled out is not executed.
            raise Unauthenticated(f"cannot record the nonce ({type(exc).__name__})") from exc
        if not fresh:
            raise Unauthenticated(f"replayed nonce {nonce[:64]!r}")


class Gate:
    """The listener's check on each incoming request: signature, clock skew, target, replay.

    Passed as ``check`` to ``Request.decode``; raises Unauthenticated to reject.

    Nonces are remembered per instance and an app-wide request matches every instance, so the
    same bytes pushed into the inbox of an instance that started later would pass both checks.
    ``not_before`` closes that: the instance's start as local wall-clock time (``time.time()``),
    moved onto the server clock with the clock's offset when a request is checked (the serve
    loop syncs the clock before it reads any request). A request signed before it is refused:
    each request runs at most once on each instance that existed when it was signed.
    """

    def __init__(
        self,
        signer: Signer,
        nonces: NonceStore,
        clock: ServerClock,
        process_type: str,
        *,
        not_before: float | None = None,
    ) -> None:
        self.signer = signer
        self.nonces = nonces
        self.clock = clock
        self.process_type = process_type
        self.not_before = not_before

    def __call__(self, body: dict[str, Any], kind: str) -> None:
        now = self.clock.now()
        stamp = self.signer.verify(body, kind, now)
        if not _addressed(body.get("to"), self.nonces.instance_id, self.process_type):
            raise Unauthenticated(f"sent to {body.get('to')!r}, which is not this instance")
        started = None if self.not_before is None else self.not_before + self.clock.offset
        if started is not None and stamp.ts < started:
            raise Unauthenticated(f"signed {started - stamp.ts:.3f} s before this instance started")
        until = stamp.ts + self.signer.max_skew
        # An expired request is dropped anyway, so its nonce need not outlive it.
        expires_at = finite(body.get("expires_at"))
        if expires_at is not None:
            until = min(until, expires_at)
        self.nonces.claim(stamp.nonce, until, now)


def target_doc(instance_id: str | None, process_types: Iterable[str] | None) -> dict[str, Any]:
    """The signed ``to`` field of a request: an instance id prefix and process types, or nulls."""
    return {"instance": instance_id, "types": sorted(process_types) if process_types else None}


def _addressed(to: Any, instance_id: str, process_type: str) -> bool:
    if to is None:
        return True  # the whole app
    if not isinstance(to, dict):
        return False
    prefix, types = to.get("instance"), to.get("types")
    if prefix is not None and not (isinstance(prefix, str) and instance_id.startswith(prefix)):
        return False
    return types is None or (isinstance(types, list) and process_type in types)


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None for anything else (bools, huge ints, NaN, text)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
