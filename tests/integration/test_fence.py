"""The fence on the listener side, with real listeners (threads) and a real redis-server."""

from __future__ import annotations

import redis

from drainctl.adapters.jobs import JobsAdapter
from drainctl.channel import ControlClient, Target
from drainctl.config import Settings
from drainctl.fence import Fence, FenceStore
from drainctl.protocol import Command, State
from drainctl.registry import Registry
from tests.integration.conftest import StartListener
from tests.integration.test_clock import Fires, StartClock, start_clock, ticking  # noqa: F401 - a fixture
from tests.polling import wait_for
from tests.redis_server import RedisServer


def fence(
    settings: Settings, release: str = "v1", ttl: float = 60.0, types: tuple[str, ...] = ("worker",)
) -> Fence:
    """Set a fence on ``release`` of ``types``; returns it."""
    client = redis.Redis.from_url(settings.redis_url)
    seconds, micros = client.time()
    fenced = Fence(release, types, seconds + micros / 1e6 + ttl, "test-deploy")
    FenceStore(client, settings.app or "").set(fenced, ttl)
    client.close()
    return fenced


def test_instance_starting_under_a_fence_comes_up_drained(
    settings: Settings, start_listener: StartListener
) -> None:
    """A worker of the fenced release starts drained; other releases and types are untouched."""
    fence(settings)
    jobs = JobsAdapter()
    fenced = start_listener("worker", adapter=jobs, release="v1")
    other_release = start_listener("worker", release="v2")
    other_type = start_listener("clock", release="v1")
    assert fenced.state is State.DRAINED
    assert not jobs.accepting
    assert fenced.heartbeat_doc()["deploy_fenced"] is True
    assert other_release.state is State.RUNNING
    assert other_type.state is State.RUNNING


def test_resume_is_refused_while_fenced_and_accepted_once_lifted(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """A zombie cannot be resumed while the fence key exists; after the lift it resumes."""
    fence(settings)
    listener = start_listener("worker", adapter=JobsAdapter(), release="v1")
    client = ControlClient(settings)
    target = Target(instance_id=listener.identity.instance_id)
    refused = client.send(Command.RESUME, target=target)
    assert refused.failed
    assert "fenced" in (refused.failed[0].error or "")
    assert listener.state is State.DRAINED
    FenceStore(redis_client, listener.identity.app).lift(["v1"], "test-deploy")
    assert client.send(Command.RESUME, target=target).ok
    assert listener.state is State.RUNNING
    assert not listener.deploy_fence.fenced


def test_fence_sent_with_a_drain_expires_on_its_own(
    settings: Settings, start_listener: StartListener
) -> None:
    """A deploy that never comes back: the instance resumes when the fence's own expiry passes."""
    jobs = JobsAdapter()
    listener = start_listener("worker", adapter=jobs, release="v1")
    short = fence(settings, ttl=1.0)
    outcome = ControlClient(settings).send(
        Command.DRAIN, args={"deadline": 1.0, "fences": [short.as_arg()]}
    )
    assert outcome.ok
    assert listener.deploy_fence.fenced
    wait_for(lambda: listener.state is State.RUNNING and jobs.accepting, 10, "fence expiry")


def test_fence_check_costs_no_command_per_heartbeat(
    start_listener: StartListener, private_redis: RedisServer
) -> None:
    """Plain heartbeats stay one SET each: the fence is read only when (re)registering."""
    client = redis.Redis.from_url(private_redis.url)
    # A server of its own: what other tests left running would count too. 0.1 s beats (a 0.3 s
    # TTL): a loaded machine's pause does not expire the entry, which would rightly re-register
    # and read the fence.
    start_listener("worker", release="v1", heartbeat_interval=0.1, redis_url=private_redis.url)
    client.config_resetstat()

    def stats() -> dict[str, int]:
        info = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()}

    # Counted from the third beat: the registration (and its fence read) is over by then.
    wait_for(lambda: stats().get("set", 0) >= 3, 10, "3 heartbeats")
    before = stats()
    wait_for(lambda: stats().get("set", 0) >= before["set"] + 10, 10, "10 more heartbeats")
    calls = {name: n - before.get(name, 0) for name, n in stats().items()}
    assert calls.get("get", 0) == 0, calls
    assert calls.get("exists", 0) == 0, calls


def test_clock_starting_under_a_fence_fires_only_once_lifted(
    settings: Settings,
    start_clock: StartClock,  # noqa: F811 - the fixture imported from test_clock
    redis_client: redis.Redis,
) -> None:
    """A real APScheduler clock restarted mid-deploy holds the lease but fires nothing until the
    deploy lifts the fence and resumes it."""
    fence(settings, types=("clock",))
    fires = Fires()
    clock = start_clock(ticking(fires, 0.05), release="v1")
    assert clock.listener is not None
    listener = clock.listener
    records = Registry(redis_client, listener.identity.app)

    def beat_shows_drained_holder() -> bool:
        (doc,) = [r.doc for r in records.live()]
        return doc["state"] == "drained" and doc["lease"] == "held" and doc["deploy_fenced"]

    wait_for(beat_shows_drained_holder, 10, "a drained lease holder in the registry")
    assert len(fires) == 0
    FenceStore(redis_client, listener.identity.app).lift(["v1"], "test-deploy")
    target = Target(instance_id=listener.identity.instance_id)
    assert ControlClient(settings).send(Command.RESUME, target=target).ok
    wait_for(lambda: len(fires) >= 3, 10, "the clock to fire")
