"""InterruptiblePop and ReliableQueue against a real redis-server."""

from __future__ import annotations

import threading

import pytest
import redis

from drainctl.adapters.reliable_queue import ReliableQueue
from drainctl.adapters.unblock import Interrupted, InterruptiblePop
from drainctl.config import Settings
from drainctl.listener import ControlListener


def test_interrupt_ends_a_long_blocking_pop_at_once(redis_client: redis.Redis, app: str):
    """A pop blocking for 60 s returns as soon as the gate closes and interrupt() is called,
    and a payload pushed afterwards stays in the list."""
    gate = threading.Event()
    gate.set()
    pops = InterruptiblePop(redis_client, gate.is_set, max_block=60)
    outcome: list[object] = []

    def pop() -> None:
        try:
            outcome.append(pops.call(lambda c: c.blpop([f"{app}:q"], 60)))
        except Interrupted as exc:
            outcome.append(exc)

    thread = threading.Thread(target=pop)
    thread.start()
    gate.clear()
    assert pops.interrupt()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], Interrupted)
    redis_client.rpush(f"{app}:q", "later")
    assert redis_client.lrange(f"{app}:q", 0, -1) == [b"later"]
    redis_client.delete(f"{app}:q")
    pops.close()


def test_closed_gate_refuses_to_pop(redis_client: redis.Redis, app: str):
    """With the gate closed, no pop is even sent: the payload stays queued."""
    redis_client.rpush(f"{app}:q", "job")
    pops = InterruptiblePop(redis_client, lambda: False)
    with pytest.raises(Interrupted):
        pops.call(lambda c: c.lpop(f"{app}:q"))
    assert redis_client.llen(f"{app}:q") == 1
    redis_client.delete(f"{app}:q")
    pops.close()


def test_hand_back_puts_the_payload_at_the_front(redis_client: redis.Redis, app: str):
    """A popped payload handed back leaves the processing list and is next in line."""
    queue = ReliableQueue(redis_client, f"{app}:jobs", app=app, consumer="c1")
    queue.push("a", "b")
    assert queue.pop(1) == b"a"
    queue.hand_back(b"a")
    assert redis_client.lrange(f"{app}:jobs", 0, -1) == [b"a", b"b"]
    assert not redis_client.exists(queue.processing)
    assert queue.pop(1) == b"a"
    queue.ack(b"a")
    assert not redis_client.exists(queue.processing)
    queue.close()
    redis_client.delete(f"{app}:jobs")


def test_recover_takes_only_dead_consumers_jobs(settings: Settings, redis_client: redis.Redis):
    """Payloads of a consumer without a heartbeat go back to the queue; a live one's stay."""
    app = settings.require_app()
    name = f"{app}:jobs"
    with ControlListener(settings=settings.replace(process_type="worker")) as live:
        alive = ReliableQueue(redis_client, name, app=app, consumer=live.identity.instance_id)
        dead = ReliableQueue(redis_client, name, app=app, consumer="gone")
        alive.push("x", "y")
        assert alive.pop(1) == b"x"
        assert dead.pop(1) == b"y"
        rescuer = ReliableQueue(redis_client, name, app=app, consumer="new")
        assert rescuer.recover() == 1
        assert redis_client.lrange(name, 0, -1) == [b"y"]
        assert redis_client.lrange(alive.processing, 0, -1) == [b"x"]
        assert redis_client.smembers(f"{name}:consumers") == {live.identity.instance_id.encode()}
        alive.ack(b"x")
        for queue in (alive, dead, rescuer):
            queue.close()
    redis_client.delete(name)
