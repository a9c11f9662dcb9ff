"""InterruptiblePop and ReliableQueue against a real redis-server."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import redis

from drainctl.adapters.reliable_queue import ReliableQueue
from drainctl.adapters.unblock import Interrupted, InterruptiblePop
from drainctl.config import Settings
from drainctl.listener import ControlListener
from tests.polling import wait_for
from tests.processes import ROOT
from tests.redis_server import RedisServer


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
    """Payloads of a consumer without a heartbeat and liveness key go back to the queue; those of
    a live one (heartbeat) or a busy one (liveness key only) stay."""
    app = settings.require_app()
    name = f"{app}:jobs"
    with ControlListener(settings=settings.replace(process_type="worker")) as live:
        alive = ReliableQueue(redis_client, name, app=app, consumer=live.identity.instance_id)
        busy = ReliableQueue(redis_client, name, app=app, consumer="busy")
        dead = ReliableQueue(redis_client, name, app=app, consumer="gone", liveness=False)
        alive.push("x", "y", "z")
        assert alive.pop(1) == b"x"
        assert busy.pop(1) == b"y"
        assert dead.pop(1) == b"z"
        rescuer = ReliableQueue(redis_client, name, app=app, consumer="new", liveness=False)
        assert rescuer.recover() == 1
        assert redis_client.lrange(name, 0, -1) == [b"z"]
        assert redis_client.lrange(alive.processing, 0, -1) == [b"x"]
        assert redis_client.lrange(busy.processing, 0, -1) == [b"y"]
        assert not dead.ack(b"z")
        assert dead.lost == 1
        assert alive.ack(b"x")
        assert busy.ack(b"y")
        for queue in (alive, busy, dead, rescuer):
            queue.close()
    redis_client.delete(name, f"{name}:consumers")


def test_a_job_recovered_from_its_owner_is_reported_lost(redis_client: redis.Redis, app: str):
    """Once the owner's liveness key is gone, a peer recovers its job; the owner's ack and
    hand_back then say it no longer owns it (and do not put it back twice)."""
    lost: list[bytes] = []
    name = f"{app}:jobs"
    owner = ReliableQueue(redis_client, name, app=app, consumer="owner", on_lost=lost.append)
    owner.push("a")
    assert owner.pop(1) == b"a"
    assert redis_client.pttl(owner.alive_key("owner")) > 0
    peer = ReliableQueue(redis_client, name, app=app, consumer="peer", liveness=False)
    assert peer.recover() == 0  # the helper process keeps the owner's key
    redis_client.delete(owner.alive_key("owner"))  # as if cut off for recover_after
    assert peer.recover() == 1
    assert not owner.hand_back(b"a")
    assert not owner.ack(b"a")
    assert lost == [b"a", b"a"]
    assert redis_client.lrange(name, 0, -1) == [b"a"]
    owner.close()
    peer.close()
    redis_client.delete(name, f"{name}:consumers")


def test_liveness_key_is_deleted_when_its_worker_exits(
    redis_server: RedisServer, redis_client: redis.Redis, app: str
):
    """The helper beats while its parent lives and deletes the key as soon as the parent exits,
    even by SIGKILL."""
    key = f"{app}:alive:child"
    script = (
        "import redis, sys, time\n"
        "from drainctl.adapters.liveness import LivenessHelper\n"
        f"LivenessHelper(redis.Redis.from_url({redis_server.url!r}), {key!r}, 1.0)"
        ".ensure_running()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    # Several TTLs later the key is still there: the helper beats, not the (sleeping) parent.
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert redis_client.exists(key)
        time.sleep(0.1)
    child.kill()
    child.wait()
    child.stdout.close()
    wait_for(lambda: not redis_client.exists(key), 5, "the helper to delete the key")


def test_a_payload_a_lost_pop_reply_left_behind_goes_back_first(
    redis_client: redis.Redis, app: str
):
    """After a pop failed on the link, a payload it moved into our list anyway (the reply was
    lost) is put back at the front of the queue before the next pop, so it is not stranded in
    the list of a worker that lives on."""
    name = f"{app}:jobs"
    queue = ReliableQueue(redis_client, name, app=app, consumer="c1", liveness=False)
    queue.push("next")
    redis_client.rpush(queue.processing, "orphan")  # what the lost BLMOVE did
    queue.orphans_possible = True
    assert queue.pop(1) == b"orphan"
    assert queue.ack(b"orphan")
    assert queue.pop(1) == b"next"
    assert queue.ack(b"next")
    queue.close()
    redis_client.delete(name, f"{name}:consumers")
