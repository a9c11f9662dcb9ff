"""Every Redis key drainctl uses, in one place, all under ``drainctl:{app}:``.

The braces are literal: ``{app}`` is a Redis Cluster hash tag, so every key of an app hashes to
one slot and lives on one node. That is what lets every Lua script, MULTI and pipeline touch
several keys (and build key names from :attr:`Keys.base` inside a script) on a cluster too.

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
        """The namespace every key of this app starts with: ``drainctl:{app}:``, braces included."""
        return f"{PREFIX}:{{{self.app}}}:"

    @property
    def apps(self) -> str:
        """Sorted set of app names by last registration (any app's listeners refresh it, with a
        TTL), so the CLI can tell a mistyped --app without KEYS."""
        return f"{PREFIX}:apps"

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

    @property
    def clock_lease(self) -> str:
        """Hash naming the one clock allowed to fire (token, instance, release); expires."""
        return f"{self.base}clock:lease"

    @property
    def clock_fence(self) -> str:
        """Counter handing out fencing tokens; its long TTL is refreshed at each acquisition."""
        return f"{self.base}clock:fence"

    @property
    def clock_next(self) -> str:
        """Hash job id -> next run time (epoch ms) persisted on drain and exit; expires."""
        return f"{self.base}clock:next"

    @property
    def clock_last(self) -> str:
        """Hash job id -> latest run time that fired (epoch ms), written at each fire; expires."""
        return f"{self.base}clock:last"

    @property
    def clock_drained(self) -> str:
        """When the clock holder last drained (epoch ms), for its successor's grace; expires."""
        return f"{self.base}clock:drained"

    def clock_once(self, job_id: str, run_ms: int) -> str:
        """Set once when a scheduled run fires, so no second clock can fire it too; expires."""
        return f"{self.base}clock:once:{job_id}:{run_ms}"

    def fence(self, release: str) -> str:
        """A deploy's fence on one release (JSON); expires on its own, lifted by its deploy."""
        return f"{self.base}fence:{release}"

    def nonce(self, instance_id: str, nonce: str) -> str:
        """A signed request's nonce as seen by one instance; expires once it could not pass."""
        return f"{self.base}nonce:{instance_id}:{nonce}"

    @property
    def deploy_lock(self) -> str:
        """The deploy in progress (JSON naming its holder); refreshed by it, expires without it."""
        return f"{self.base}deploy:lock"

    @property
    def history(self) -> str:
        """Stream of finished deploys, capped (MAXLEN ~); its TTL is renewed by each append."""
        return f"{self.base}deploy:history"

    def deploy_awaiting(self, release: str) -> str:
        """A release phase's drained deploy of ``release``, awaiting the new instances'
        confirmation (JSON); deleted by the instance that confirms it, expires regardless."""
        return f"{self.base}deploy:awaiting:{release}"

    def deploy_confirm(self, deploy_id: str) -> str:
        """Which instance confirms a release-phase deploy (SET NX); deleted by it, expires."""
        return f"{self.base}deploy:confirm:{deploy_id}"
