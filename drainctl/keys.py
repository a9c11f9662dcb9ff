"""Every Redis key drainctl uses, in one place, all under ``drainctl:{app}:``.

Each key either carries a TTL or is deleted by whoever created it, so nothing accumulates in the
user's Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "drainctl"


@dataclass(frozen=True)
class Keys:
    """Key names for one app."""

    app: str

    @property
    def base(self) -> str:
        """The namespace every key of this app starts with."""
        return f"{PREFIX}:{self.app}:"

    @property
    def instances(self) -> str:
        """Sorted set of instance ids (the registry index); refreshed with a TTL by listeners."""
        return f"{self.base}instances"

    def instance(self, instance_id: str) -> str:
        """One instance's heartbeat document; expires about three heartbeats after the last."""
        return f"{self.base}instance:{instance_id}"

    def inbox(self, instance_id: str) -> str:
        """List of requests waiting for one instance; expires with the newest request in it."""
        return f"{self.base}inbox:{instance_id}"

    def reply(self, request_id: str) -> str:
        """List the listeners push replies to; deleted by the requester, expires regardless."""
        return f"{self.base}reply:{request_id}"
