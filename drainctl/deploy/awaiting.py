"""The record a release phase leaves for the new release's instances: what they must confirm.

Stored under ``Keys.deploy_awaiting(R)`` (signed with kind ``awaiting`` when a secret is set, so
nobody with mere Redis access can start a confirmation that keeps fences), expiring with the
release phase's fences (``--fence-ttl``): a release that starts later has nothing to confirm.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import redis

from drainctl.deploy.lock import server_now
from drainctl.deploy.verify import NewRelease, VerifySpec
from drainctl.errors import ProtocolError, Unauthenticated
from drainctl.keys import Keys
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

SIGNED_KIND = "awaiting"


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
