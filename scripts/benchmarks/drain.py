"""Drain to acknowledgement: nothing in flight, a job in flight, and fan-out to 200 listeners.

- Nothing in flight: ``drain`` to 1 and 4 listener processes (generic JobsAdapter, idle), then
  ``resume``; anchored to ``ping`` on the same fleet, sent in turn with the drains and like them
  to a fleet at rest (past the state writes of the previous command, as in a deploy;
  back-to-back requests are faster, see roundtrip), and to Celery's closest remote command,
  ``control.cancel_consumer(reply=True, limit=4)``, against 4 real workers on the same Redis.
- A job in flight: how long after the job ends the acknowledgement arrives (the overhead over
  the job's remaining time), from wall-clock stamps taken in the listener's process.
- Fan-out: time until all of 200 listeners (10 processes of 20) acknowledged a drain.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from _celery import CeleryWorkers, control_app
from _common import (
    ListenerFleet,
    latency,
    median_ms,
    new_app,
    pick,
    progress,
    ratio,
    redis_server,
    standalone,
    wait_until,
)

from drainctl import Command, ControlClient, Settings
from drainctl.listener import STATE_BEAT_DELAY

JOB_S = 0.2
# A fleet at rest, as in a deploy: past the state writes the previous command caused (the
# same pause whatever their delay, so runs of older releases compare).
SETTLE_S = max(STATE_BEAT_DELAY, 1.0) + 0.2
FANOUT = (10, 20)  # processes, listeners per process


def _client(url: str, app: str, expected: int) -> ControlClient:
    client = ControlClient(Settings(redis_url=url, app=app))
    wait_until(lambda: len(client.live()) == expected, 30, f"{expected} listeners")
    return client


def _cycle(client: ControlClient, expected: int) -> float:
    """Seconds until every listener acknowledged a drain; resumes them afterwards (untimed)."""
    started = time.perf_counter()
    outcome = client.send(Command.DRAIN, args={"deadline": 10}, timeout=15)
    elapsed = time.perf_counter() - started
    if not outcome.ok or len(outcome.replies) != expected:
        raise RuntimeError(f"drain acknowledged by {len(outcome.replies)} of {expected}")
    if not client.send(Command.RESUME, timeout=15).ok:
        raise RuntimeError("resume failed")
    # A deploy drains a fleet at rest: let the resume's heartbeats go out before the next drain.
    time.sleep(SETTLE_S)
    return elapsed


def _rested_ping(client: ControlClient, expected: int) -> float:
    """Seconds for a ping to a fleet at rest, the anchor drains are compared with."""
    started = time.perf_counter()
    outcome = client.send(Command.PING, timeout=15)
    elapsed = time.perf_counter() - started
    if len(outcome.replies) != expected:
        raise RuntimeError(f"ping answered by {len(outcome.replies)} of {expected}")
    time.sleep(SETTLE_S)
    return elapsed


def _alternate(
    client: ControlClient, expected: int, cycles: int
) -> tuple[list[float], list[float]]:
    """Drains and pings in turn, each to a fleet at rest: (drain seconds, ping seconds)."""
    _cycle(client, expected)  # warm-up
    drains, pings = [], []
    for _ in range(cycles):
        drains.append(_cycle(client, expected))
        pings.append(_rested_ping(client, expected))
    return drains, pings


def idle_drain(url: str, processes: int) -> dict[str, Any]:
    """Drain/resume cycles and pings on ``processes`` idle listener processes."""
    app = new_app()
    with ListenerFleet(url, app, processes, 1, "--jobs"):
        client = _client(url, app, processes)
        drains, pings = _alternate(client, processes, pick(40, 8))
        client.client.close()
    result = {"processes": processes, "drain_ack": latency(drains), "ping": latency(pings)}
    progress(f"drain to {processes} idle: p50 {result['drain_ack']['p50_ms']} ms")
    return result


def in_flight_drain(url: str) -> dict[str, Any]:
    """Acknowledgement delay after a running job ends, over several drains."""
    app = new_app()
    queue, ended = f"{app}:bench-jobs", f"{app}:bench-ended"
    plain = redis.Redis.from_url(url)
    overheads, remaining = [], []
    with ListenerFleet(url, app, 1, 1, "--jobs"):
        client = _client(url, app, 1)
        for _ in range(pick(20, 6)):
            plain.rpush(queue, JOB_S)
            wait_until(lambda: plain.llen(queue) == 0, 10, "the job to start")
            sent = time.time()
            outcome = client.send(Command.DRAIN, args={"deadline": 10}, timeout=15)
            acked = time.time()
            popped = plain.blpop([ended], timeout=10)
            if not outcome.ok or popped is None:
                raise RuntimeError("drain with a job in flight failed")
            job_end = float(popped[1])
            overheads.append(acked - job_end)
            remaining.append(job_end - sent)
            client.send(Command.RESUME)
        client.client.close()
    plain.delete(queue, ended)
    plain.close()
    result = {"job_s": JOB_S, "overhead": latency(overheads), "remaining": median_ms(remaining)}
    progress(f"drain with a job in flight: overhead p50 {result['overhead']['p50_ms']} ms")
    return result


def fanout(url: str) -> dict[str, Any]:
    """Time until all of 200 listeners acknowledged a drain, and a ping to them as anchor."""
    hosts, per_host = FANOUT
    app = new_app()
    with ListenerFleet(url, app, hosts, per_host) as fleet:
        client = _client(url, app, fleet.size)
        drains, pings = _alternate(client, fleet.size, pick(20, 5))
        client.client.close()
    result = {
        "listeners": fleet.size,
        "processes": hosts,
        "all_acked": latency(drains),
        "ping": latency(pings),
    }
    progress(f"drain fan-out to {fleet.size}: p50 {result['all_acked']['p50_ms']} ms")
    return result


def celery_cancel_consumer(url: str, workers: int) -> dict[str, Any]:
    """Celery's nearest thing to a drain ack: cancel_consumer with replies, then add it back."""
    with CeleryWorkers(url, workers):
        control = control_app(url).control
        samples = []
        for _ in range(pick(30, 6)):
            started = time.perf_counter()
            replies = control.cancel_consumer("celery", reply=True, limit=workers)
            samples.append(time.perf_counter() - started)
            control.add_consumer("celery", reply=True, limit=workers)
            if len(replies) != workers:
                raise RuntimeError(f"cancel_consumer answered by {len(replies)} of {workers}")
    result = {"workers": workers, "cancel_consumer_limit": latency(samples)}
    progress(
        f"celery cancel_consumer to {workers}: p50 {result['cancel_consumer_limit']['p50_ms']}"
    )
    return result


def run() -> dict[str, Any]:
    """Every drain figure with its anchors, and the fan-out target."""
    with redis_server() as server:
        idle = {str(n): idle_drain(server.url, n) for n in (1, 4)}
        busy = in_flight_drain(server.url)
        wide = fanout(server.url)
        celery = celery_cancel_consumer(server.url, 4)
    acked = wide["all_acked"]["p50_ms"]
    return {
        "nothing_in_flight": idle,
        "job_in_flight": busy,
        "fanout_200": wide,
        "celery": celery,
        "ratios": {
            "drain_4_vs_celery_cancel_consumer_4": ratio(
                celery["cancel_consumer_limit"]["p50_ms"], idle["4"]["drain_ack"]["p50_ms"]
            ),
            "drain_4_over_ping_4": round(
                idle["4"]["drain_ack"]["p50_ms"] / idle["4"]["ping"]["p50_ms"], 2
            ),
        },
        "targets": {"200_acked_under_100ms": {"value_ms": acked, "met": acked < 100}},
        "adapter": "generic JobsAdapter (clock and worker adapters: see clock_drain, worker_drain)",
    }


if __name__ == "__main__":
    standalone(run)
