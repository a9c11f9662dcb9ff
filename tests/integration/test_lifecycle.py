"""The listener's ordered state machine, one regression test per race it closed (real listeners
in threads, a real redis-server; adapters that widen the race windows on purpose)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis

from drainctl.adapters.base import DrainReport
from drainctl.adapters.jobs import JobsAdapter
from drainctl.channel import ControlClient, Outcome, Target
from drainctl.config import Settings
from drainctl.dispatch import QUICK_DRAIN
from drainctl.fence import Fence, FenceStore
from drainctl.keys import Keys
from drainctl.listener import ControlListener
from drainctl.protocol import Command, Reply, Request, State
from tests.integration.conftest import StartListener
from tests.integration.test_listener import run_job_in_thread
from tests.polling import wait_for
from tests.redis_server import RedisServer
from tests.unit.test_jobs_adapter import Noting


class LateGate(JobsAdapter):
    """A JobsAdapter whose drain closes the gate ``delay`` seconds late: the window in which a
    resume used to slip in before the drain and be undone by it."""

    def __init__(self, delay: float = 0.005, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def drain(self, deadline: float) -> DrainReport:
        time.sleep(self.delay)
        return super().drain(deadline)


def server_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def push_requests(
    client: redis.Redis, listener: ControlListener, *commands: tuple[Command, dict[str, Any]]
) -> list[Request]:
    """Put several requests into one inbox at once (one RPUSH), as a queue of them would be."""
    keys = Keys(listener.identity.app)
    now = server_now(client)
    requests = []
    for command, args in commands:
        request_id = uuid.uuid4().hex
        requests.append(
            Request(command, "test", now, now + 30, keys.reply(request_id), args, request_id)
        )
    client.rpush(listener.inbox.key, *(r.encode() for r in requests))
    return requests


def reply_to(client: redis.Redis, request: Request, timeout: float = 10) -> Reply:
    popped = client.blpop([request.reply_to], timeout)
    assert popped is not None, f"no reply to {request.command.value}"
    client.delete(request.reply_to)
    return Reply.decode(popped[1])


def settled(listener: ControlListener, state: State, adapter: JobsAdapter) -> bool:
    return listener.state is state and adapter.accepting == (state is State.RUNNING)


def drain_in_background(
    client: ControlClient, deadline: float = 20
) -> tuple[threading.Thread, list[Outcome]]:
    """Send a drain from a thread (it waits for its reply); the outcome lands in the list."""
    box: list[Outcome] = []
    args = {"deadline": deadline}

    def send() -> None:
        box.append(client.send(Command.DRAIN, args=args, timeout=deadline + 5))

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, box


def test_queued_drain_superseded_by_a_later_resume_never_runs(
    settings: Settings, start_listener: StartListener
) -> None:
    """Drain A (job in flight), drain B queued behind it, then resume: A is aborted, B never
    starts, the worker ends up running (it used to stay drained for good)."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "long", 1.0)
    client = ControlClient(settings)
    first, first_box = drain_in_background(client)
    wait_for(lambda: listener.state is State.DRAINING, 5, "drain A")
    second, second_box = drain_in_background(client)
    time.sleep(0.2)  # drain B is queued behind A
    assert client.send(Command.RESUME).ok
    first.join()
    second.join()
    assert "aborted" in (first_box[0].failed[0].error or "")
    assert "superseded" in (second_box[0].failed[0].error or "")
    worker.join()
    wait_for(lambda: settled(listener, State.RUNNING, jobs), 5, "running")
    time.sleep(0.3)
    assert settled(listener, State.RUNNING, jobs)


def test_drain_and_resume_waiting_together_end_running(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """A drain and a resume popped back to back, with the adapter slow to close its gate: the
    adapter ends up taking work and the listener says so (20 trials; it used to fail 18/20).
    The gate closes after the serve loop stops waiting for a quick drain, so the resume is
    handled while the drain enters the adapter."""
    jobs = LateGate(delay=QUICK_DRAIN + 0.01)
    listener = start_listener(adapter=jobs)
    for _ in range(20):
        drain, resume = push_requests(
            redis_client, listener, (Command.DRAIN, {"deadline": 5}), (Command.RESUME, {})
        )
        assert reply_to(redis_client, resume).ok
        drained = reply_to(redis_client, drain)
        assert not drained.ok  # aborted or superseded: never an acknowledgement
        wait_for(lambda: settled(listener, State.RUNNING, jobs), 5, "running after resume")


def test_idle_adapter_drains_on_the_serve_thread_and_a_busy_one_on_the_drain_thread(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """Nothing in flight: the drain is over at once, acknowledged without the drain thread
    (the hand-off cost more than the drain). A job in flight: the drain waits for it on the
    drain thread while the serve thread still answers pings."""
    jobs = Noting()
    listener = start_listener(adapter=jobs)
    (drain,) = push_requests(redis_client, listener, (Command.DRAIN, {"deadline": 5}))
    assert reply_to(redis_client, drain).ok
    assert settled(listener, State.DRAINED, jobs)
    assert jobs.threads == ["drainctl-serve"]
    client = ControlClient(settings)
    assert client.send(Command.RESUME).ok
    worker = run_job_in_thread(jobs, "busy", 0.6)
    thread, box = drain_in_background(client, 5)
    wait_for(lambda: listener.state is State.DRAINING, 5, "draining")
    assert client.send(Command.PING, timeout=0.5).ok  # not blocked by the drain
    thread.join()
    worker.join()
    assert box[0].ok
    assert box[0].replies[0].data["finished"] == ["busy"]
    assert jobs.threads[1].startswith("drainctl-drain")


class BusyOnce(LateGate):
    """Declines the first drain at once (it goes to the drain thread, slowly); idle after."""

    def __init__(self) -> None:
        super().__init__(delay=0.3)
        self.order: list[str] = []
        self.declined = False

    def drain(self, deadline: float) -> DrainReport:
        report = super().drain(deadline)
        self.order.append("queued drain")
        return report

    def drain_if_idle(self) -> DrainReport | None:
        if not self.declined:
            self.declined = True
            return None
        self.order.append("drain at once")
        return DrainReport()


def test_a_drain_behind_a_queued_one_waits_its_turn(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """An idle adapter's drain is done at once only with no drain queued before it: arrival
    order holds."""
    jobs = BusyOnce()
    listener = start_listener(adapter=jobs)
    first, second = push_requests(
        redis_client, listener, (Command.DRAIN, {"deadline": 5}), (Command.DRAIN, {"deadline": 5})
    )
    assert reply_to(redis_client, first).ok
    assert reply_to(redis_client, second).ok
    assert jobs.order == ["queued drain", "queued drain"]
    assert settled(listener, State.DRAINED, jobs)


def test_state_is_draining_not_running_while_the_adapter_takes_nothing(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """With a job in flight and a resume that overtook the gate, status never says running
    while the adapter is closed."""
    jobs = LateGate(delay=0.05)
    listener = start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "busy", 0.5)
    push_requests(redis_client, listener, (Command.DRAIN, {"deadline": 5}), (Command.RESUME, {}))
    give_up = time.monotonic() + 3
    while time.monotonic() < give_up:
        state, accepting = listener.state, jobs.accepting
        if state is State.RUNNING:
            # Checked in this order, the adapter cannot have closed in between without the
            # listener showing it first.
            assert accepting or listener.state is not State.RUNNING
        time.sleep(0.001)
    worker.join()
    wait_for(lambda: settled(listener, State.RUNNING, jobs), 5, "running")


def test_aborted_drain_is_a_failed_acknowledgement(
    settings: Settings, start_listener: StartListener
) -> None:
    """A drain cut short by a resume replies ok=false, saying why (drain and deploy exit 3)."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "slow", 1.0)
    client = ControlClient(settings)
    thread, box = drain_in_background(client)
    wait_for(lambda: listener.state is State.DRAINING, 5, "draining")
    assert client.send(Command.RESUME).ok
    thread.join()
    (failed,) = box[0].failed
    assert failed.error == "aborted: a resume arrived before the drain completed"
    assert failed.data["aborted"] is True
    worker.join()


def test_expired_queued_drain_never_runs(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """A drain whose request expired while it waited behind another is dropped, not run."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "long", 1.0)
    keys = Keys(listener.identity.app)
    now = server_now(redis_client)
    long_drain = Request(Command.DRAIN, "t", now, now + 30, keys.reply("a"), {"deadline": 20})
    short_drain = Request(Command.DRAIN, "t", now, now + 0.3, keys.reply("b"), {"deadline": 20})
    redis_client.rpush(listener.inbox.key, long_drain.encode(), short_drain.encode())
    wait_for(lambda: listener.state is State.DRAINING, 5, "draining")
    assert reply_to(redis_client, long_drain).ok  # the job ends after ~1 s: complete
    resume = push_requests(redis_client, listener, (Command.RESUME, {}))[0]
    assert reply_to(redis_client, resume).ok
    worker.join()
    time.sleep(0.3)
    assert settled(listener, State.RUNNING, jobs)
    assert redis_client.llen(short_drain.reply_to) == 0


def fence_for(
    client: redis.Redis, release: str, ttl: float, deadline: float = 25.0, deploy: str = "d1"
) -> Fence:
    return Fence(release, ("worker",), server_now(client) + ttl, deploy, deadline)


def test_kept_fence_outlives_its_first_expiry(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """A zombie whose fence the deploy kept (rewritten with a later expiry) does not resume when
    the first expiry passes, and a resume is still refused."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs, release="v1")
    store = FenceStore(redis_client, listener.identity.app)
    short = fence_for(redis_client, "v1", 1.0)
    store.set(short, 1.0)
    client = ControlClient(settings)
    assert client.send(Command.DRAIN, args={"deadline": 1, "fences": [short.as_arg()]}).ok
    kept = fence_for(redis_client, "v1", 60.0)
    store.set(kept, 60.0)  # what a successful deploy does to the old release's fence
    # The first beat past the first expiry reads the key and keeps the later fence (a fixed
    # 1.5 s wait, one beat interval past that expiry, missed it on a loaded run).
    wait_for(lambda: listener.deploy_fence.fence == kept, 5, "the kept fence read back")
    assert listener.state is State.DRAINED
    refused = client.send(Command.RESUME)
    assert "fenced" in (refused.failed[0].error or "")
    assert settled(listener, State.DRAINED, jobs)


def test_missing_fence_key_lifts_nothing(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """A fence key deleted mid-deploy (by hand, by eviction) while a re-registration reads it:
    the listener stays drained and reports the missing key; a resume then lifts the fence."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs, release="v1")
    fence = fence_for(redis_client, "v1", 60.0)
    FenceStore(redis_client, listener.identity.app).set(fence, 60.0)
    client = ControlClient(settings)
    assert client.send(Command.DRAIN, args={"deadline": 1, "fences": [fence.as_arg()]}).ok
    redis_client.delete(listener.deploy_fence.key)
    redis_client.delete(Keys(listener.identity.app).instance(listener.identity.instance_id))
    records = client.registry
    wait_for(
        lambda: any(r.doc.get("fence_missing") for r in records.live()), 5, "fence_missing beat"
    )
    assert settled(listener, State.DRAINED, jobs)
    assert client.send(Command.RESUME).ok
    assert settled(listener, State.RUNNING, jobs)
    assert not listener.deploy_fence.fenced


def test_fence_found_at_registration_drains_with_its_deadline_off_the_beat_thread(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """A worker that finds its release fenced when it re-registers lets its job finish within
    the fence's deadline (it used to cut it at once) and keeps heartbeating meanwhile."""
    stopped: list[str] = []
    jobs = JobsAdapter(on_deadline=lambda late: stopped.extend(j.name for j in late))
    listener = start_listener(adapter=jobs, release="v1")
    worker = run_job_in_thread(jobs, "in-flight", 1.5)
    FenceStore(redis_client, listener.identity.app).set(fence_for(redis_client, "v1", 60.0, 10), 60)
    instance_key = Keys(listener.identity.app).instance(listener.identity.instance_id)
    redis_client.delete(instance_key)  # as after an outage: the next beat registers and reads
    wait_for(lambda: listener.state is State.DRAINING, 5, "drain from the fence")
    for _ in range(4):  # the beat thread keeps the entry alive while the drain waits
        time.sleep(0.25)
        assert redis_client.exists(instance_key)
    worker.join()
    wait_for(lambda: settled(listener, State.DRAINED, jobs), 5, "drained")
    assert stopped == []
    assert jobs.status()["jobs_done"] == 1


def test_unsigned_fence_is_ignored_when_a_secret_is_set(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """With a secret, a fence written without it (anyone with Redis write access) drains
    nothing; a fence the deploy signed does."""
    signed_settings = settings.replace(secrets=("s3cret",))
    jobs = JobsAdapter()
    listener = ControlListener(
        adapter=jobs, settings=signed_settings.replace(process_type="worker", release="v1")
    ).start()
    try:
        app = listener.identity.app
        instance_key = Keys(app).instance(listener.identity.instance_id)
        FenceStore(redis_client, app).set(fence_for(redis_client, "v1", 60.0), 60)
        redis_client.delete(instance_key)
        wait_for(lambda: redis_client.exists(instance_key), 5, "re-registration")
        time.sleep(0.3)
        assert settled(listener, State.RUNNING, jobs)
        signer = ControlClient(signed_settings).signer
        FenceStore(redis_client, app, signer).set(fence_for(redis_client, "v1", 60.0, 1), 60)
        redis_client.delete(instance_key)
        wait_for(lambda: settled(listener, State.DRAINED, jobs), 5, "drained by a signed fence")
    finally:
        listener.stop()
        redis_client.delete(Keys(settings.app or "").fence("v1"))


def test_concurrent_drains_each_report_the_job_that_finished(
    settings: Settings, start_listener: StartListener
) -> None:
    """SIGTERM's drain beside a requested one: neither resets the other's report."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "shared", 0.6)
    client = ControlClient(settings)
    thread, box = drain_in_background(client, 10)
    wait_for(lambda: listener.state is State.DRAINING, 5, "draining")
    final = listener.drain(10, final=True)
    thread.join()
    worker.join()
    assert final.finished == ["shared"]
    assert box[0].replies[0].data["finished"] == ["shared"]


def test_sigterm_drain_is_final(settings: Settings, start_listener: StartListener) -> None:
    """After SIGTERM's drain no resume makes the process take work again."""
    jobs = JobsAdapter()
    listener = start_listener(adapter=jobs)
    listener.drain(1, final=True)
    refused = ControlClient(settings).send(
        Command.RESUME, target=Target(instance_id=listener.identity.instance_id)
    )
    assert "shutting down" in (refused.failed[0].error or "")
    listener.resume()
    assert settled(listener, State.DRAINED, jobs)


class Exploding(JobsAdapter):
    def drain(self, deadline: float) -> DrainReport:
        super().drain(deadline)
        raise RuntimeError("adapter bug")


class ExplodingWhenIdle(JobsAdapter):
    def drain_if_idle(self) -> DrainReport | None:
        super().drain_if_idle()
        raise RuntimeError("adapter bug")


@pytest.mark.parametrize("adapter", [Exploding, ExplodingWhenIdle])
def test_failing_adapter_drain_leaves_no_state_stuck(
    settings: Settings, start_listener: StartListener, adapter: type[JobsAdapter]
) -> None:
    """An adapter whose drain raises, on the drain thread or at once on the serve thread: an
    error reply, state drained (not draining), and a resume brings it back."""
    jobs = adapter()
    listener = start_listener(adapter=jobs)
    client = ControlClient(settings)
    outcome = client.send(Command.DRAIN, args={"deadline": 1})
    assert "RuntimeError: adapter bug" in (outcome.failed[0].error or "")
    assert listener.state is State.DRAINED
    assert client.send(Command.RESUME).ok
    assert settled(listener, State.RUNNING, jobs)


def test_fence_evicted_under_memory_pressure_keeps_the_release_drained() -> None:
    """``maxmemory-policy allkeys-lru`` under pressure evicts the fence key: the drained worker
    re-registers, finds it gone, stays drained and says so (it used to resume silently)."""
    server = RedisServer(None, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru").start()
    client = redis.Redis.from_url(server.url)
    jobs = JobsAdapter()
    app = f"t-{uuid.uuid4().hex[:10]}"
    listener = ControlListener(
        adapter=jobs,
        settings=Settings(
            redis_url=server.url, app=app, process_type="worker", release="v1",
            heartbeat_interval=0.2,
        ),
    ).start()  # fmt: skip
    try:
        fence = fence_for(client, "v1", 600.0)
        FenceStore(client, app).set(fence, 600.0)
        args = {"deadline": 1, "fences": [fence.as_arg()]}
        assert (
            ControlClient(Settings(redis_url=server.url, app=app)).send(Command.DRAIN, args=args).ok
        )
        filler = 0
        while client.exists(Keys(app).fence("v1")):
            client.set(f"filler:{filler}", b"x" * 10_000)
            filler += 1
        # Noticed when it registers again: its own entry evicted too, else its 60th beat.
        wait_for(lambda: listener.deploy_fence.missing, 20, "the listener to notice")
        assert settled(listener, State.DRAINED, jobs)
    finally:
        listener.stop()
        client.close()
        server.cleanup()
