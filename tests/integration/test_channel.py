"""Request/reply between a ControlClient and real listeners over a real redis-server."""

from __future__ import annotations

import threading

import pytest
import redis

from drainctl.channel import ControlClient, Target
from drainctl.config import Settings
from drainctl.errors import ConfigError
from drainctl.protocol import Command, Request
from tests.integration.conftest import StartListener
from tests.processes import spawn_loop_worker, stop


@pytest.mark.parametrize("n", [1, 4, 50])
def test_ping_reaches_every_listener(settings: Settings, start_listener: StartListener, n: int):
    """Every live listener answers exactly once and the requester names each of them."""
    listeners = [start_listener() for _ in range(n)]
    outcome = ControlClient(settings).send(Command.PING, timeout=10)
    assert outcome.ok
    assert sorted(r.instance_id for r in outcome.replies) == sorted(
        listener.identity.instance_id for listener in listeners
    )
    assert set(outcome.latency) == {r.instance_id for r in outcome.replies}


def test_ping_reaches_listeners_in_other_processes(settings: Settings):
    """Listeners embedded in separate host processes answer over TCP like in-process ones."""
    procs = [spawn_loop_worker(settings.redis_url, str(settings.app)) for _ in range(4)]
    try:
        outcome = ControlClient(settings).send(Command.PING, timeout=10)
        assert outcome.ok
        assert sorted(r.instance_id for r in outcome.replies) == sorted(i for _, i in procs)
    finally:
        for proc, _ in procs:
            stop(proc)


def test_target_by_process_type_and_instance(settings: Settings, start_listener: StartListener):
    """Only the addressed process type, or the one addressed instance, receives the command."""
    clocks = [start_listener("clock") for _ in range(2)]
    workers = [start_listener("worker") for _ in range(3)]
    client = ControlClient(settings)

    by_type = client.send(Command.PING, target=Target(process_types=frozenset({"worker"})))
    assert sorted(r.instance_id for r in by_type.replies) == sorted(
        w.identity.instance_id for w in workers
    )
    one = clocks[1].identity.instance_id
    by_id = client.send(Command.PING, target=Target(instance_id=one[:8]))
    assert [r.instance_id for r in by_id.replies] == [one]
    assert by_id.replies[0].instance["process_type"] == "clock"


def test_silent_instance_is_reported_and_others_do_not_wait(
    settings: Settings, start_listener: StartListener
):
    """A dead instance still in the registry is named as missing; live ones answer at once."""
    alive = start_listener()
    proc, dead_id = spawn_loop_worker(settings.redis_url, str(settings.app), DYNO="worker.9")
    stop(proc)  # SIGKILL: its registry entry lives on until the heartbeat TTL runs out
    outcome = ControlClient(settings).send(Command.PING, timeout=1.0)
    assert [r.instance_id for r in outcome.replies] == [alive.identity.instance_id]
    assert [(m.instance_id, m.process_type, m.doc["dyno"]) for m in outcome.missing] == [
        (dead_id, "worker", "worker.9")
    ]
    assert not outcome.ok


def test_returns_as_soon_as_everyone_answered(settings: Settings, start_listener: StartListener):
    """With a 30 s timeout and every instance alive, the requester does not wait it out."""
    for _ in range(3):
        start_listener()
    outcome = ControlClient(settings).send(Command.PING, timeout=30)
    assert outcome.ok
    assert outcome.elapsed < 10


def test_two_requesters_at_once(settings: Settings, start_listener: StartListener):
    """Concurrent requesters each get their own complete set of replies."""
    ids = sorted(start_listener().identity.instance_id for _ in range(3))
    results: list[list[str]] = []

    def ask() -> None:
        client = ControlClient(settings)
        for _ in range(20):
            outcome = client.send(Command.PING, timeout=5)
            results.append(sorted(r.instance_id for r in outcome.replies))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [ids] * 40


def test_expired_request_is_dropped(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
):
    """A request whose expiry has passed is not executed and gets no reply."""
    listener = start_listener()
    client = ControlClient(settings)
    client.send(Command.PING)  # syncs the client's server clock
    assert client.clock is not None
    now = client.clock.now()
    stale = Request(
        command=Command.DRAIN,
        sender="test",
        sent_at=now - 60,
        expires_at=now - 30,
        reply_to=client.keys.reply("stale"),
        args={"deadline": 1},
    )
    redis_client.rpush(client.keys.inbox(listener.identity.instance_id), stale.encode())
    assert client.send(Command.PING).ok  # answered after the stale one was looked at
    assert listener.state.value == "running"
    assert redis_client.llen(client.keys.reply("stale")) == 0


def test_repeated_request_runs_once(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
):
    """A request delivered twice (same id) is executed and answered once."""
    listener = start_listener()
    client = ControlClient(settings)
    client.send(Command.PING)
    assert client.clock is not None
    now = client.clock.now()
    request = Request(
        command=Command.PING,
        sender="test",
        sent_at=now,
        expires_at=now + 10,
        reply_to=client.keys.reply("twice"),
    )
    inbox = client.keys.inbox(listener.identity.instance_id)
    redis_client.rpush(inbox, request.encode(), request.encode())
    redis_client.pexpire(inbox, 10_000)
    # The inbox is a FIFO: once this ping is answered, both copies have been looked at.
    assert client.send(Command.PING).ok
    assert redis_client.llen(client.keys.reply("twice")) == 1
    redis_client.delete(client.keys.reply("twice"))


def test_a_reply_list_redis_refuses_costs_no_later_request(
    settings: Settings,
    start_listener: StartListener,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
):
    """A request replying to a key of another type is logged; the next request is answered."""
    listener = start_listener()
    client = ControlClient(settings)
    client.send(Command.PING)
    assert client.clock is not None
    now = client.clock.now()
    not_a_list = client.keys.reply("not-a-list")
    redis_client.set(not_a_list, "a string", px=10_000)
    request = Request(Command.PING, "test", now, now + 10, not_a_list)
    inbox = client.keys.inbox(listener.identity.instance_id)
    redis_client.rpush(inbox, request.encode())
    redis_client.pexpire(inbox, 10_000)
    # Its answer goes out with the blocking read that takes this ping: both in one round trip.
    assert client.send(Command.PING).ok
    assert client.send(Command.PING).ok
    assert f"could not reply to {not_a_list}: WRONGTYPE" in caplog.text
    assert redis_client.get(not_a_list) == b"a string"


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), -1.0])
def test_a_timeout_that_is_no_number_of_seconds_is_refused(settings: Settings, timeout: float):
    """Nothing is delivered for a timeout that could never expire (or already has)."""
    with pytest.raises(ConfigError, match="timeout must be a finite, non-negative number"):
        ControlClient(settings).send(Command.PING, timeout=timeout)
