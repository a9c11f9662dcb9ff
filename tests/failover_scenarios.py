"""Failovers under real drainctl processes, counted: shared by e2e tests and the trials script.

- ``sentinel_clock``: a holder and a same-release standby clock (``tick`` every 100 ms) behind
  Sentinel; the master is SIGKILLed while they fire, the replica promoted. The ledger of fired
  runs lives on a separate redis-server, so the count survives the failover.
- ``sentinel_drain`` / ``cluster_drain``: a loop worker with a 2 s job is drained by the real
  CLI while its master is SIGKILLed (Sentinel) or failed over (Cluster, CLUSTER FAILOVER); the
  app is then resumed. Counts jobs started twice and drains that were not acknowledged.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redis.crc import key_slot

from drainctl.config import Settings
from drainctl.connection import connect
from drainctl.keys import Keys
from tests.clocks import grid_report, instance_doc, ledger, spawn_clock, stop_clock
from tests.e2e.test_faults import SECRET, drainctl
from tests.host_app import HostProcess
from tests.polling import wait_for
from tests.redis_cluster import RedisCluster, SentinelSetup, live_states

TICK_MS = 100


@dataclass
class Count:
    """One trial: runs or jobs seen, duplicated, missed (clock runs) or unacknowledged."""

    seen: int
    duplicates: int
    missed: int


def sentinel_clock(
    sentinel: SentinelSetup, ledger_url: str, logs: Path, *, lagging: bool = False
) -> Count:
    """Kill the master under a firing holder and its standby; count the ledger afterwards.

    ``lagging``: the replica is stopped (SIGSTOP) while the holder fires 10 runs and resumed
    as the master dies, so the promoted replica lacks those runs' once-keys and ``clock:last``.
    """
    app = f"fo-{uuid.uuid4().hex[:8]}"
    env = {"DEMO_TICK_SECONDS": str(TICK_MS / 1000), "DRAINCTL_LEASE_TTL": "3"}
    env["DEMO_LEDGER_URL"] = ledger_url
    procs = [
        spawn_clock(sentinel.url, app, dyno, "v7", logs / f"{app}-{dyno}.log", **env)
        for dyno in ("clock.1", "clock.2")
    ]
    client = connect(Settings(redis_url=sentinel.url, app=app))
    ledger_client = connect(Settings(redis_url=ledger_url, app=app))
    fires = lambda: len(ledger(ledger_client, app))  # noqa: E731
    try:

        def leases() -> list[str]:
            docs = (instance_doc(client, app, dyno) or {} for dyno in ("clock.1", "clock.2"))
            return sorted(str(doc.get("lease")) for doc in docs)

        # Either clock may win the lease at start; the other stands by.
        wait_for(lambda: leases() == ["held", "standby"], 30, "a holder and a standby clock")
        seen = fires()
        wait_for(lambda: fires() >= seen + 10, 30, "the holder to fire")
        replica, master = sentinel.replica.process, sentinel.master.process
        assert replica is not None
        assert master is not None
        if lagging:
            replica.send_signal(signal.SIGSTOP)
            seen = fires()
            wait_for(lambda: fires() >= seen + 10, 30, "runs the replica misses")
        master.kill()
        if lagging:
            replica.send_signal(signal.SIGCONT)
        seen = fires()
        wait_for(lambda: fires() >= seen + 40, 60, "the clocks to fire after the failover")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        runs, duplicates, missed = grid_report(ledger(ledger_client, app), "tick", TICK_MS)
        return Count(runs, len(duplicates), len(missed))
    finally:
        for proc in procs:
            stop_clock(proc)
        ledger_client.delete(f"demo:{app}:ledger:fires", f"demo:{app}:ledger:started")
        client.close()
        ledger_client.close()


def drain_through(url: str, fault: Callable[[str], object], logs: Path) -> Count:
    """Drain a worker mid-job, ``fault(app)`` once it is draining, resume; count its jobs."""
    app = f"fo-{uuid.uuid4().hex[:8]}"
    host = HostProcess(url, app, logs / f"{app}.journal", job_seconds=2, secret=SECRET)
    try:
        wait_for(host.lines, 30, "a job in flight")
        drain = drainctl(url, app, "drain", "--deadline", "20", "--timeout", "30")
        wait_for(lambda: live_states(url, app).get(host.instance_id) == "draining", 30, "drain")
        fault(app)
        drain.communicate(timeout=90)
        acknowledged = drain.returncode == 0
        wait_for(lambda: live_states(url, app).get(host.instance_id), 60, "the listener back")
        drainctl(url, app, "resume", "--timeout", "10").communicate(timeout=90)
        done = len(host.done())
        wait_for(lambda: len(host.done()) > done, 60, "jobs after the resume")
        started = [int(line.split()[1]) for line in host.lines() if line.startswith("start ")]
        return Count(len(started), len(started) - len(set(started)), int(not acknowledged))
    finally:
        host.stop()


def sentinel_drain(sentinel: SentinelSetup, logs: Path) -> Count:
    """``drain_through`` with the Sentinel master SIGKILLed."""
    process = sentinel.master.process
    assert process is not None
    return drain_through(sentinel.url, lambda _: process.kill(), logs)


def cluster_drain(cluster: RedisCluster, logs: Path) -> Count:
    """``drain_through`` with the app's cluster master failed over to its replica."""
    fault = lambda app: cluster.fail_over(key_slot(Keys(app).base.encode()))  # noqa: E731
    return drain_through(cluster.url, fault, logs)
