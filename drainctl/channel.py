"""Request/reply over Redis: deliver requests to per-instance inboxes, gather the replies.

Each instance reads its own inbox list with a blocking pop, so a request pushed while it is
reconnecting waits there until it comes back (pub/sub would lose it). The requester learns from
the registry how many replies to expect and returns as soon as all of them are in.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from drainctl.config import Settings, validate_name
from drainctl.connection import (
    REDIS_ERRORS,
    Line,
    RawCommand,
    ServerClock,
    connect,
    translate_outage,
)
from drainctl.errors import ConfigError, ProtocolError
from drainctl.keys import Keys
from drainctl.protocol import Command, Reply, Request, Seal
from drainctl.registry import InstanceRecord, Registry, known_apps
from drainctl.signing import Signer, target_doc
from drainctl.topology import Redirected, follows_failover, on_cluster

logger = logging.getLogger(__name__)

# Replies outlive the request by this much so a slow requester still finds them.
REPLY_GRACE = 5.0
MAX_REPLY_TTL = 3600.0
# Pause before waiting again on the master a failover or redirect leads to.
FAILOVER_PAUSE = 0.25


@dataclass(frozen=True)
class Target:
    """Who a request is for: one instance, some process types, or (the default) the whole app."""

    instance_id: str | None = None
    process_types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        # A type with a newline or a stray character matches no one: say so, do not drain no one.
        for process_type in sorted(self.process_types or ()):
            validate_name("process type", process_type)


@dataclass
class Outcome:
    """What came back: replies in arrival order and the instances that never answered."""

    command: Command
    replies: list[Reply] = field(default_factory=list)
    missing: list[InstanceRecord] = field(default_factory=list)
    elapsed: float = 0.0
    # Seconds from sending until each instance's reply was read, by instance id.
    latency: dict[str, float] = field(default_factory=dict)
    # Entries whose heartbeat failed the signature check: neither awaited nor counted.
    unverified: list[InstanceRecord] = field(default_factory=list)

    @property
    def failed(self) -> list[Reply]:
        """Replies that report an error."""
        return [r for r in self.replies if not r.ok]

    @property
    def ok(self) -> bool:
        """Everyone answered and nobody failed."""
        return not self.missing and not self.failed


def unverified_only(records: list[InstanceRecord]) -> str:
    """Why nothing was addressed when only entries that fail the signature check matched: most
    likely the CLI has another secret than the listeners."""
    first = records[0]
    entries = "entry" if len(records) == 1 else "entries"
    return (
        f"{len(records)} matching {entries} ignored, not signed with this secret "
        f"({first.label}: {first.doubt}); is --secret / DRAINCTL_SECRET the listeners' secret?"
    )


# How many known apps an "unknown app" error names.
KNOWN_APPS_SHOWN = 10


def own_latencies(batch: list[Reply], arrived: float) -> dict[str, float]:
    """Each reply's own round trip, from a batch read at once ``arrived`` seconds after sending.

    Replies queued while the requester was not reading arrive together; their ``replied_at``
    stamps (Redis server clock, ping only) say how much earlier than the batch's last one each
    was written, so the batch's arrival is moved back by that much for each.
    """
    stamps = [r.data.get("replied_at") for r in batch]
    if len(batch) < 2 or not all(isinstance(t, (int, float)) for t in stamps):
        return {r.instance_id: arrived for r in batch}
    last = max(cast(list[float], stamps))
    return {
        r.instance_id: max(0.0, arrived - (last - float(stamp)))
        for r, stamp in zip(batch, cast(list[float], stamps), strict=True)
    }


class ControlClient:
    """The requester side, used by the CLI and the deploy orchestrator."""

    def __init__(
        self, settings: Settings, client: redis.Redis | None = None, sender: str = "cli"
    ) -> None:
        self.settings = settings
        self.app = settings.require_app()
        self.keys = Keys(self.app)
        self.client = client if client is not None else connect(settings, max_connections=4)
        self._follows_failover = follows_failover(self.client)
        self.signer = Signer.from_settings(settings)
        self.registry = Registry(self.client, self.app, self.signer)
        self.sender = sender
        self._doubted: set[str] = set()
        self.clock: ServerClock | None = None
        # Whether the server has BLMPOP; learnt from the first refusal.
        self._multipop = True

    def live(
        self, process_types: frozenset[str] | None = None, *, unverified: bool = False
    ) -> list[InstanceRecord]:
        """The app's live instances, optionally of some process types only.

        With a secret set, entries whose heartbeat fails the signature check are left out (with
        a warning), so no plan or verify counts them; ``unverified=True`` keeps them, for status.
        """
        with translate_outage(self.settings):
            records = self.registry.live(process_types)
        return records if unverified else self._trusted(records)

    def require_known_app(self) -> None:
        """ConfigError (exit 2) naming the known apps when no listener of ours ever registered:
        a mistyped --app must not read as "no live instances". Not on a Cluster: no app index."""
        if on_cluster(self.settings):
            return
        with translate_outage(self.settings):
            apps = known_apps(self.client)
        if self.app not in apps:
            shown = ", ".join(apps[:KNOWN_APPS_SHOWN]) or "none"
            more = len(apps) - KNOWN_APPS_SHOWN
            raise ConfigError(
                f"unknown app {self.app!r}: no instance of it registered on this Redis in the "
                f"last day; known apps: {shown}" + (f" and {more} more" if more > 0 else "")
            )

    def _trusted(self, records: list[InstanceRecord]) -> list[InstanceRecord]:
        for record in records:
            if not record.trusted and record.instance_id not in self._doubted:
                self._doubted.add(record.instance_id)
                logger.warning(
                    "ignoring %s: its heartbeat is not signed with the secret (%s)",
                    record.label,
                    record.doubt,
                )
        return [r for r in records if r.trusted]

    def send(
        self,
        command: Command,
        *,
        target: Target | None = None,
        args: dict[str, Any] | None = None,
        timeout: float = 5.0,
        not_awaited: frozenset[str] = frozenset(),
    ) -> Outcome:
        """Deliver ``command`` to every targeted instance and wait up to ``timeout`` for replies.

        Instances in ``not_awaited`` (known gone) get the request but are not waited for.
        """
        if not (math.isfinite(timeout) and timeout >= 0):
            raise ConfigError(f"timeout must be a finite, non-negative number, got {timeout!r}")
        target = target or Target()
        started = time.monotonic()
        outcome = Outcome(command)
        with translate_outage(self.settings), Line(self.client) as line:
            request = self._request(command, args or {}, timeout)
            ttl_ms = round(timeout * 1000)
            records = self.registry.live(
                target.process_types,
                target.instance_id,
                deliver=request.encode(self._seal(target)),
                inbox_ttl_ms=ttl_ms,
                line=line,
                now=request.sent_at,
            )
            # An unverified entry got the request too (the same script delivers it), but only
            # instances that prove they hold the secret are waited for.
            trusted = [r for r in self._trusted(records) if r.instance_id not in not_awaited]
            awaited = {r.instance_id for r in trusted}
            failure: BaseException | None = None
            try:
                if trusted:
                    self._gather(line, outcome, request, awaited, started)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                answered = {r.instance_id for r in outcome.replies}
                # Who did not take the request may never pop it: its inbox gets the TTL the
                # push left out (see registry._SELECT), also on Ctrl-C. Not with Redis gone:
                # those inboxes get one when their entries are pruned.
                if not isinstance(failure, REDIS_ERRORS):
                    untaken = [r.instance_id for r in records if r.instance_id not in answered]
                    self._expire_inboxes(line, untaken, ttl_ms)
        outcome.missing = [r for r in trusted if r.instance_id not in answered]
        outcome.unverified = [r for r in records if not r.trusted]
        outcome.elapsed = time.monotonic() - started
        return outcome

    def _expire_inboxes(self, line: Line, instance_ids: list[str], ttl_ms: int) -> None:
        if not instance_ids:
            return
        try:
            line.call(*(("PEXPIRE", self.keys.inbox(i), ttl_ms) for i in instance_ids))
        except REDIS_ERRORS as exc:
            # Those inboxes get their TTL when their entries are pruned.
            logger.warning("could not set the TTL of %d inbox(es): %s", len(instance_ids), exc)

    def _request(self, command: Command, args: dict[str, Any], timeout: float) -> Request:
        if self.clock is None:
            self.clock = ServerClock()
            self.clock.sync(self.client)
        now = self.clock.now()
        request_id = uuid.uuid4().hex
        return Request(
            command=command,
            sender=self.sender,
            sent_at=now,
            expires_at=now + timeout,
            reply_to=self.keys.reply(request_id),
            args=args,
            id=request_id,
        )

    def _gather(
        self, line: Line, outcome: Outcome, request: Request, awaited: set[str], started: float
    ) -> None:
        deadline = started + request.expires_at - request.sent_at
        replies: dict[str, Reply] = {}
        while pending := len(awaited - replies.keys()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Never block longer than the socket's read timeout allows (see connect()).
            wait = min(remaining, self.settings.block_timeout)
            try:
                raws = self._pop_replies(line, request.reply_to, pending, wait)
            except redis.ConnectionError as exc:
                # Behind Sentinel or Cluster a dropped link is a failover or a moved slot: the
                # next connection finds the new master, where the replies land. A single server
                # that drops us may have restarted empty (request and fence lost): fail closed.
                if not (self._follows_failover or isinstance(exc, Redirected)):
                    raise
                logger.warning("lost the Redis master while waiting for replies (%s)", exc)
                time.sleep(min(FAILOVER_PAUSE, max(remaining - 0.01, 0)))
                continue
            arrived = time.monotonic() - started
            batch = []
            for raw in raws:
                reply = self._decode_reply(raw, request.id)
                if reply is not None and reply.instance_id not in replies:
                    replies[reply.instance_id] = reply
                    batch.append(reply)
            outcome.latency.update(own_latencies(batch, arrived))
        outcome.replies = list(replies.values())

    def _pop_replies(self, line: Line, key: str, wanted: int, timeout: float) -> list[bytes]:
        """Wait up to ``timeout`` for replies; take up to ``wanted`` of them in one round trip.

        A ping to N instances must not spend an extra empty LPOP per reply: BLMPOP (Redis >= 7)
        blocks and takes everything queued at once; older servers get BLPOP, then LPOP only when
        more replies are expected.
        """
        if self._multipop:
            try:
                (popped,) = line.call(("BLMPOP", timeout, 1, key, "LEFT", "COUNT", wanted))
            except redis.ResponseError:
                self._multipop = False  # Redis < 7: no BLMPOP
            else:
                return [] if popped is None else cast(list[bytes], popped[1])
        (first,) = line.call(("BLPOP", key, timeout))
        if first is None:
            return []
        raws = [cast(bytes, first[1])]
        if wanted > 1:
            (rest,) = line.call(("LPOP", key, wanted - 1))
            raws.extend(cast(list[bytes], rest or []))
        return raws

    def _seal(self, target: Target) -> Seal | None:
        signer, clock = self.signer, self.clock
        if signer is None or clock is None:
            return None
        # The same bytes go to every selected inbox, so they name the target, not one recipient.
        to = target_doc(target.instance_id, target.process_types)
        return lambda body, kind: signer.sign(body | {"to": to}, kind, clock.now())

    def _check_reply(self, body: dict[str, Any], kind: str) -> None:
        # A reply needs no nonce: it is bound to this request by its (signed) request id.
        if self.signer is not None and self.clock is not None:
            self.signer.verify(body, kind, self.clock.now())

    def _decode_reply(self, raw: bytes, request_id: str) -> Reply | None:
        try:
            reply = Reply.decode(raw, self._check_reply)
        except ProtocolError as exc:
            logger.warning("ignoring a reply: %s", exc)
            return None
        if reply.request_id != request_id:
            logger.warning("ignoring a reply to another request (%s)", reply.request_id)
            return None
        return reply


class Inbox:
    """The listener side: one instance's inbox and the way back to requesters.

    ``pop`` and ``reply_and_pop`` belong to the listener's serve thread and run on a connection
    it holds for itself (see :class:`Line`); ``reply`` may be called from any thread.
    """

    def __init__(
        self, client: redis.Redis, keys: Keys, instance_id: str, signer: Signer | None = None
    ) -> None:
        self.client = client
        self.key = keys.inbox(instance_id)
        self.signer = signer
        self._line = Line(client)

    def pop(self, timeout: float) -> bytes | None:
        """Block up to ``timeout`` seconds for the next raw request."""
        (popped,) = self._line.call(("BLPOP", self.key, timeout))
        return _popped(popped)

    def reply(self, request: Request, reply: Reply, now: float, ahead: Ahead | None = None) -> None:
        """Push ``reply`` to the request's reply list, which expires shortly after the request."""
        with Line(self.client) as line, _answering(ahead) as first:
            push, ttl_ms = self._reply_commands(request, reply, now)
            *before, pushed = line.call(*first, push, raise_on_error=False)
            if ahead is not None:
                ahead.answer(before[0])
            if isinstance(pushed, redis.ResponseError):
                raise pushed
            if pushed == 1:  # this push created the list: see reply_and_pop
                line.call(("PEXPIRE", request.reply_to, ttl_ms))

    def reply_and_pop(
        self, request: Request, reply: Reply, now: float, timeout: float, ahead: Ahead | None = None
    ) -> bytes | None:
        """:meth:`reply`, then :meth:`pop`, in one round trip: one per request, not two.

        The reply list needs a TTL only from the listener whose push created it: the requester
        pops it empty (and so deletes it) as replies come, and a push to a list that exists
        keeps its TTL. So only that listener sends the ``PEXPIRE``, on the client's other
        connection, while this one waits on its inbox: a fan-out costs Redis one such command
        per read of the requester's, not one per listener.
        """

        def before_pop(responses: list[Any]) -> None:
            if ahead is not None:
                ahead.answer(responses[0])
            if responses[-1] != 1:
                return  # refused (warned below), or the list existed and has its TTL
            try:  # a Line: redis-py's own command path costs more CPU than the round trip
                with Line(self.client) as line:
                    line.call(("PEXPIRE", request.reply_to, ttl_ms))
            except REDIS_ERRORS as exc:
                logger.warning("could not set the TTL of %s: %s", request.reply_to, exc)

        with _answering(ahead) as first:
            push, ttl_ms = self._reply_commands(request, reply, now)
            *_, pushed, popped = self._line.call(
                *first,
                push,
                ("BLPOP", self.key, timeout),
                raise_on_error=False,
                before_last=before_pop,
            )
        if isinstance(popped, redis.ResponseError):
            raise popped
        # A reply list Redis refuses (say, a key of another type) must not cost the next request.
        if isinstance(pushed, redis.ResponseError):
            logger.warning("could not reply to %s: %s", request.reply_to, pushed)
        return _popped(popped)

    def open(self) -> None:
        """Connect the serve thread's connection now, before the listener's other one.

        Otherwise the first request would find it held and open the second connection itself:
        several round trips (AUTH, CLIENT SETNAME...) in the middle of answering.
        """
        self._line.open()

    def close(self) -> None:
        """Give the serve thread's connection back to the pool."""
        self._line.close()

    def _reply_commands(self, request: Request, reply: Reply, now: float) -> tuple[RawCommand, int]:
        """The reply's push, and the TTL (ms) its list gets."""
        # Clamped: a far-future expires_at must neither overflow nor keep the list for years.
        ttl = min(max(request.expires_at - now, 0.0), MAX_REPLY_TTL) + REPLY_GRACE
        seal = None if self.signer is None else functools.partial(self.signer.sign, now=now)
        return ("RPUSH", request.reply_to, reply.encode(seal)), round(ttl * 1000)


class Ahead:
    """A command sent in a reply's round trip, ahead of its push (the listener's registry write,
    so the registry shows a state before the requester reads its acknowledgement), and what
    gets its response: exactly once, a ResponseError when refused, the error when the round
    trip failed."""

    def __init__(self, command: RawCommand, answered: Callable[[Any], None]) -> None:
        self.command = command
        self._answered: Callable[[Any], None] | None = answered

    def answer(self, response: Any) -> None:
        answered, self._answered = self._answered, None
        if answered is not None:
            answered(response)


@contextlib.contextmanager
def _answering(ahead: Ahead | None) -> Iterator[tuple[RawCommand, ...]]:
    """The commands to send before a reply's; a failed round trip still answers ``ahead``."""
    try:
        yield () if ahead is None else (ahead.command,)
    except BaseException as exc:
        if ahead is not None:
            ahead.answer(exc)
        raise


def _popped(popped: Any) -> bytes | None:
    """The value of a BLPOP response ([key, value]), None when it timed out."""
    return None if popped is None else cast(bytes, popped[1])
