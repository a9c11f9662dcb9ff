"""What a request leaves in Redis, and how many commands it costs per listener."""

from __future__ import annotations

import functools
import time

import pytest
import redis

from drainctl.channel import REPLY_GRACE, ControlClient
from drainctl.config import Settings
from drainctl.keys import Keys
from drainctl.listener import ControlListener
from drainctl.protocol import Command, Request
from drainctl.registry import ORPHAN_INBOX_TTL_MS, Registry
from tests.integration.conftest import StartListener
from tests.polling import wait_for
from tests.redis_server import RedisServer


def register_silent(redis_client: redis.Redis, app: str, instance_id: str) -> None:
    """A registry entry nobody serves: a listener that died without a word."""
    doc = {"instance_id": instance_id, "process_type": "worker", "heartbeat_interval": 5.0}
    Registry(redis_client, app).register(doc, 5.0)


def test_a_request_nobody_takes_expires_with_its_timeout(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
):
    """The push into an idle inbox sets no TTL; the requester sets it once the instance has not
    answered, so the request is gone when it could no longer be answered."""
    start_listener()
    app = str(settings.app)
    register_silent(redis_client, app, "silent1")
    outcome = ControlClient(settings).send(Command.PING, timeout=0.5)
    assert [r.instance_id for r in outcome.missing] == ["silent1"]
    inbox = Keys(app).inbox("silent1")
    assert redis_client.llen(inbox) == 1
    assert 0 < redis_client.pttl(inbox) <= 500
    redis_client.delete(Keys(app).instance("silent1"), Keys(app).instances)


def test_a_gone_instance_inbox_gets_a_ttl_when_its_entry_is_pruned(
    settings: Settings, redis_client: redis.Redis
):
    """A request left without a TTL in the inbox of an instance that then vanished (its
    requester died before it could set one) expires once any reader prunes the entry."""
    app = str(settings.app)
    keys = Keys(app)
    register_silent(redis_client, app, "gone1")
    now = time.time()
    request = Request(Command.PING, "test", now, now + 5, keys.reply("x"))
    redis_client.rpush(keys.inbox("gone1"), request.encode())
    redis_client.delete(keys.instance("gone1"))  # its heartbeat expired
    assert ControlClient(settings).live() == []
    assert redis_client.zrange(keys.instances, 0, -1) == []
    assert 0 < redis_client.pttl(keys.inbox("gone1")) <= ORPHAN_INBOX_TTL_MS
    redis_client.delete(keys.inbox("gone1"))


@pytest.mark.parametrize("n", [1, 3])
def test_a_ping_costs_three_commands_per_listener_plus_a_few(
    private_redis: RedisServer, app: str, n: int
):
    """Per listener: the push into its inbox, its reply and its next blocking read. Per request:
    the script, the index read, one MGET of every heartbeat, the reads of the replies (one
    BLMPOP per batch, at most one per listener) and a PEXPIRE from each listener whose reply
    created the reply list (at least one, at most one per listener). No GET, no PTTL."""
    settings = Settings(redis_url=private_redis.url, app=app, block_timeout=30.0)
    listeners = [
        ControlListener(process_type="worker", settings=settings).start() for _ in range(n)
    ]
    admin = redis.Redis.from_url(private_redis.url)
    try:
        client = ControlClient(settings)
        assert client.send(Command.PING, timeout=5).ok  # warm-up: script loaded, clock synced
        admin.config_resetstat()
        outcome = client.send(Command.PING, timeout=5)
        # The TTL goes out on the listener's other connection, maybe after the reply was read.
        wait_for(lambda: "cmdstat_pexpire" in admin.info("commandstats"), 5, "the reply's TTL")
        stats = admin.info("commandstats")
    finally:
        admin.close()
        for listener in listeners:
            listener.stop()
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    for ours in ("info", "config|resetstat", "set"):  # our probes; heartbeats (own timer)
        calls.pop(ours, None)
    assert outcome.ok
    assert len(outcome.replies) == n
    assert {k: calls.get(k, 0) for k in ("evalsha", "zrange", "mget", "get", "pttl")} == {
        "evalsha": 1,
        "zrange": 1,
        "mget": 1,
        "get": 0,
        "pttl": 0,
    }
    assert (calls["rpush"], calls["blpop"]) == (2 * n, n)
    assert 1 <= calls["blmpop"] <= n
    assert 1 <= calls["pexpire"] <= n
    assert set(calls) == {"evalsha", "zrange", "mget", "rpush", "pexpire", "blpop", "blmpop"}


# The listener's clock is Redis's TIME read over a round trip: off by up to half of one.
CLOCK_SLACK = 0.05


@pytest.mark.parametrize("command", [Command.PING, Command.DRAIN])  # serve and drain threads
def test_a_reply_nobody_reads_expires(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis, command: Command
):
    """A requester gone before the replies: the reply that created the list gave it a TTL (the
    request's own time left plus a grace), and the replies pushed after it keep that TTL."""
    listener = start_listener()
    keys = Keys(listener.identity.app)
    seconds, micros = redis_client.time()
    now = seconds + micros / 1e6
    reply_to = keys.reply("gone-requester")
    requests = [
        Request(command, "test", now, now + 5, reply_to, {"deadline": 0}, f"r{i}") for i in (1, 2)
    ]
    for answered, request in enumerate(requests, 1):  # one at a time: each answered alone
        redis_client.rpush(listener.inbox.key, request.encode())
        wait_for(functools.partial(replies_are, redis_client, reply_to, answered), 5, "a reply")
    assert 0 < redis_client.pttl(reply_to) <= (5 + REPLY_GRACE + CLOCK_SLACK) * 1000
    redis_client.delete(reply_to)


def replies_are(client: redis.Redis, reply_to: str, count: int) -> bool:
    return bool(client.llen(reply_to) == count)
