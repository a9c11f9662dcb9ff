"""Drain and resume of a generic-adapter loop, the registry view, and the listener's footprint."""

from __future__ import annotations

import threading
import time

import redis

from drainctl.adapters.jobs import JobsAdapter
from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.listener import ControlListener
from drainctl.protocol import Command, State
from drainctl.registry import Registry
from tests.integration.conftest import StartListener
from tests.integration.test_listener import run_job_in_thread
from tests.polling import wait_for
from tests.redis_server import RedisServer


def test_drain_waits_for_jobs_in_flight_and_no_longer(
    settings: Settings, start_listener: StartListener
):
    """The ack comes once the running job ends (about 0.6 s), long before the 20 s deadline."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "send-email", 0.6)
    outcome = ControlClient(settings).send(Command.DRAIN, args={"deadline": 20}, timeout=25)
    worker.join()
    assert outcome.ok
    reply = outcome.replies[0]
    assert reply.state == "drained"
    assert reply.data["finished"] == ["send-email"]
    assert reply.data["still_running"] == []
    assert 0.4 < reply.data["duration_s"] < 5
    assert listener.state is State.DRAINED
    assert not jobs.accepting
    assert jobs.start("late") is None  # no new work once drained


def test_drain_deadline_names_unfinished_jobs(settings: Settings, start_listener: StartListener):
    """At the deadline the reply fails and names the job still running."""
    jobs = JobsAdapter()
    start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "nightly-report", 2.0)
    outcome = ControlClient(settings).send(Command.DRAIN, args={"deadline": 0.2}, timeout=5)
    assert not outcome.ok
    failed = outcome.failed[0]
    assert failed.error == "still running at the deadline: nightly-report"
    assert [job["name"] for job in failed.data["still_running"]] == ["nightly-report"]
    assert failed.data["still_running"][0]["running_s"] >= 0.2
    worker.join()


def test_resume_during_a_drain_ends_it(settings: Settings, start_listener: StartListener):
    """A resume sent while a drain still waits releases it; the instance ends up running."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "slow", 1.5)
    client = ControlClient(settings)
    drained: list[bool] = []
    drainer = threading.Thread(
        target=lambda: drained.append(
            client.send(Command.DRAIN, args={"deadline": 20}, timeout=25).replies[0].data["aborted"]
        )
    )
    drainer.start()
    wait_for(lambda: listener.state is State.DRAINING)
    assert client.send(Command.RESUME).ok
    drainer.join()
    assert drained == [True]
    assert listener.state is State.RUNNING
    assert jobs.accepting
    worker.join()


def test_status_reports_state_and_counters(settings: Settings, start_listener: StartListener):
    """Status carries identity, state, jobs in flight and done, memory; the registry agrees."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs, dyno="worker.1", release="v7")
    with jobs.start("ok") as job:
        assert job is not None
    with jobs.start("bad"):
        raise ValueError("boom")
    worker = run_job_in_thread(jobs, "running", 0.5)
    client = ControlClient(settings)
    doc = client.send(Command.STATUS).replies[0].data
    assert (doc["dyno"], doc["release"], doc["state"]) == ("worker.1", "v7", "running")
    assert (doc["in_flight"], doc["jobs_done"], doc["errors"]) == (1, 2, 1)
    assert doc["last_error"] == {"job": "bad", "type": "ValueError", "message": "boom"}
    assert doc["memory_mb"] > 1
    worker.join()
    client.send(Command.DRAIN, args={"deadline": 1})
    wait_for(lambda: [r.doc["state"] for r in client.live()] == ["drained"])
    assert client.live()[0].instance_id == listener.identity.instance_id


def test_stale_then_expired_entries(settings: Settings, redis_client: redis.Redis):
    """An entry is stale after two missed beats and vanishes, index included, after three."""
    registry = Registry(redis_client, str(settings.app))
    registry.register(
        {"instance_id": "gone1", "process_type": "worker", "heartbeat_interval": 0.2}, 0.2
    )
    assert [r.stale for r in registry.live()] == [False]
    wait_for(lambda: any(r.stale for r in registry.live()), timeout=2)
    wait_for(lambda: registry.live() == [], timeout=2)
    assert redis_client.zcard(registry.keys.instances) == 0


def test_clean_stop_removes_the_entry(settings: Settings, start_listener: StartListener):
    """stop() deletes the instance's registry entry and inbox at once."""
    listener = start_listener()
    client = ControlClient(settings)
    assert len(client.live()) == 1
    listener.stop()
    assert client.live() == []


def test_listener_holds_at_most_two_connections(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
):
    """Busy with a drain, heartbeats and pings at once, a listener opens at most two sockets."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "busy", 0.5)
    client = ControlClient(settings)
    drainer = threading.Thread(
        target=lambda: client.send(Command.DRAIN, args={"deadline": 5}, timeout=10)
    )
    drainer.start()
    for _ in range(20):
        ControlClient(settings).send(Command.PING)
    name = f"drainctl-listener-{listener.identity.instance_id}"
    held = [c for c in redis_client.client_list() if c["name"] == name]
    drainer.join()
    worker.join()
    assert 1 <= len(held) <= 2


def test_idle_listener_sends_about_one_command_per_beat(
    settings: Settings, private_redis: RedisServer
):
    """Idle, a listener issues its heartbeat SET and its blocking read, and nothing else.

    On a redis-server of its own: the counters are server-wide, and other tests' clocks and
    listeners must not count."""
    redis_client = redis.Redis.from_url(private_redis.url)
    listener = ControlListener(
        settings=settings.replace(
            redis_url=private_redis.url, process_type="worker", heartbeat_interval=0.2
        )
    ).start()
    try:
        # Counted from the second beat: the registration (and its reads) is over by then.
        wait_for(lambda: _calls(redis_client).get("set", 0) >= 2, 10, "two heartbeats")
        before = _calls(redis_client)
        time.sleep(2.0)
        after = _calls(redis_client)
    finally:
        listener.stop()
        redis_client.close()
    delta = {cmd: after[cmd] - before.get(cmd, 0) for cmd in after if after[cmd] != before.get(cmd)}
    # 10 beats in 2 s at 0.2 s, plus at most one blocking read returning (block_timeout 2 s).
    assert set(delta) <= {"set", "blpop"}
    assert 8 <= delta["set"] <= 12
    assert delta.get("blpop", 0) <= 1


def _calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command on the server, not counting our own INFO."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name != "cmdstat_info"
    }


def test_the_registry_shows_a_drain_or_resume_once_acknowledged(
    settings: Settings, start_listener: StartListener
):
    """The reply carries the registry write ahead of it: read right after the acknowledgement,
    the registry shows the new state (the heartbeat thread, at 30 s, writes nothing here)."""
    start_listener(adapter=JobsAdapter(), heartbeat_interval=30)
    client = ControlClient(settings)
    for _ in range(10):
        assert client.send(Command.DRAIN, args={"deadline": 1}).ok
        assert [r.doc["state"] for r in client.live()] == ["drained"]
        assert client.send(Command.RESUME).ok
        assert [r.doc["state"] for r in client.live()] == ["running"]


def test_a_drain_reply_finding_its_entry_expired_registers_again(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
):
    """The reply's write only refreshes an entry (``SET ... XX``): one that expired while the
    drain waited for a job is registered again by the heartbeat thread at once, drained."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs, heartbeat_interval=30)
    worker = run_job_in_thread(jobs, "slow", 1.0)
    client = ControlClient(settings)
    drainer = threading.Thread(target=client.send, args=(Command.DRAIN,), kwargs={"timeout": 10})
    drainer.start()
    wait_for(lambda: [r.doc["state"] for r in client.live()] == ["draining"], 5, "draining")
    entry = Registry(redis_client, str(settings.app)).keys.instance(listener.identity.instance_id)
    redis_client.delete(entry)
    worker.join()
    drainer.join()
    wait_for(lambda: [r.doc["state"] for r in client.live()] == ["drained"], 5, "re-registered")
