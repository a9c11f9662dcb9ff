"""drainctl's control channel against its floor, measured side by side in one run.

- **Floor**: bare echo threads (``_echo_host.py``: BLPOP the inbox, RPUSH a reply, nothing
  else) in the same process layout as the listeners; the requester pipelines one LPUSH per
  inbox in one round trip and BLMPOPs the replies. Three commands per echo and request.
- **ping** to 4 (4 processes) and 200 listeners (10 processes of 20), drainctl through the
  library (``ControlClient.send``) and the floor, alternating in blocks so both see the same
  background load; p50, ratio to the floor, and CPU per request of requester, listeners (or
  echoes) and redis-server (psutil).
- **Commands per listener and request** from ``INFO commandstats`` (``CONFIG RESETSTAT``
  before a block of requests, read after) for the floor's ping and drainctl's ping, status
  request, registry read (``drainctl status``), drain and resume. Heartbeat writes (``set``,
  the listeners' own timer and the state change a drain causes) are counted apart: they are
  not part of a request's path.
- **Drain at 500**: 500 listeners (50 processes of 10) and, as the comparison, 200 (20 of 10):
  time until all acknowledged a drain through the library (from a fleet at rest, as in a
  deploy) and through the CLI (``drainctl drain``, a fresh process), and the slowest single
  reply, whose growth from 200 to 500 should not exceed the listener count's (2.5x).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import redis
from _common import (
    BIN,
    HERE,
    ListenerFleet,
    Sampler,
    commandstats,
    interleave,
    latency,
    median_ms,
    ms,
    new_app,
    pick,
    progress,
    reap,
    redis_server,
    standalone,
    time_command,
    wait_until,
)

from drainctl import Command, ControlClient, Settings
from drainctl.listener import STATE_BEAT_DELAY

# listeners -> (processes, listeners per process), as in roundtrip.py
PING_LAYOUTS = {4: (4, 1), 200: (10, 20)}
DRAIN_LAYOUTS = {200: (20, 10), 500: (50, 10)}
# A fleet at rest, as in a deploy: past the state writes the previous command caused (the
# same pause whatever their delay, so runs of older releases compare).
SETTLE_S = max(STATE_BEAT_DELAY, 1.0) + 0.2
HEARTBEAT_COMMANDS = {"set"}
# Our own probes.
MONITOR_COMMANDS = {"info", "config|resetstat", "config"}


class EchoFleet:
    """``hosts`` echo processes of ``per_host`` threads each (see _echo_host.py)."""

    def __init__(self, url: str, prefix: str, hosts: int, per_host: int) -> None:
        self.url, self.prefix, self.hosts, self.per_host = url, prefix, hosts, per_host
        self.processes: list[subprocess.Popen[str]] = []
        self.inboxes: list[str] = []

    def __enter__(self) -> EchoFleet:
        for index in range(self.hosts):
            argv = [sys.executable, str(HERE / "_echo_host.py"), "--redis-url", self.url]
            argv += ["--prefix", self.prefix, "--first", str(index * self.per_host)]
            argv += ["--count", str(self.per_host)]
            self.processes.append(
                subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        for process in self.processes:
            line = process.stdout.readline() if process.stdout else ""
            self.inboxes += json.loads(line)["inboxes"]
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        reap(self.processes, 5)

    @property
    def pids(self) -> list[int]:
        """Process ids of the echo hosts."""
        return [p.pid for p in self.processes]


class FloorRequester:
    """Pipelines one LPUSH per inbox, then BLMPOPs until every echo answered."""

    def __init__(self, url: str, inboxes: list[str], prefix: str) -> None:
        self.pool = redis.ConnectionPool.from_url(url, max_connections=1)
        self.connection: Any = self.pool.get_connection()
        self.inboxes = inboxes
        self.prefix = prefix
        self.sent = 0

    def ping(self) -> None:
        """One request to every echo; returns when all replied."""
        self.sent += 1
        reply = f"{self.prefix}:reply:{self.sent}"
        conn = self.connection
        pushes = [("LPUSH", inbox, reply) for inbox in self.inboxes]
        conn.send_packed_command(conn.pack_commands(pushes), check_health=False)
        for _ in pushes:
            conn.read_response()
        pending = len(self.inboxes)
        while pending:
            conn.send_command("BLMPOP", 5, 1, reply, "LEFT", "COUNT", pending)
            popped = conn.read_response()
            if popped is None:
                raise RuntimeError("the floor lost a reply")
            pending -= len(popped[1])

    def close(self) -> None:
        """Give the connection back."""
        self.pool.release(self.connection)
        self.pool.disconnect()


# -- command counts ---------------------------------------------------------------------------


def count(admin: redis.Redis, call: Callable[[], Any], listeners: int, runs: int) -> dict[str, Any]:
    """Commands per listener and request over ``runs`` calls, heartbeat writes apart."""
    totals: dict[str, int] = {}
    for _ in range(runs):
        admin.config_resetstat()
        call()
        _add(totals, admin)
    return _per_request(totals, listeners, runs)


def _add(totals: dict[str, int], admin: redis.Redis) -> None:
    for name, calls in commandstats(admin, MONITOR_COMMANDS).items():
        totals[name] = totals.get(name, 0) + calls


def _per_request(totals: dict[str, int], listeners: int, runs: int) -> dict[str, Any]:
    channel = {k: v for k, v in totals.items() if k not in HEARTBEAT_COMMANDS}
    beats = sum(v for k, v in totals.items() if k in HEARTBEAT_COMMANDS)
    per = runs * listeners
    return {
        "per_listener": round(sum(channel.values()) / per, 2),
        "per_request": round(sum(channel.values()) / runs, 1),
        "heartbeat_writes_per_listener": round(beats / per, 2),
        "by_command_per_request": {k: round(v / runs, 1) for k, v in sorted(channel.items())},
    }


def _send(client: ControlClient, command: Command, expected: int, **kwargs: Any) -> Any:
    outcome = client.send(command, timeout=15, **kwargs)
    if len(outcome.replies) != expected or not outcome.ok:
        raise RuntimeError(f"{command.value} answered by {len(outcome.replies)} of {expected}")
    return outcome


def drainctl_counts(admin: redis.Redis, client: ControlClient, size: int) -> dict[str, Any]:
    """Commands per listener for each request kind; drains and resumes from a fleet at rest."""
    runs = pick(10, 3)
    drain = functools.partial(_send, client, Command.DRAIN, size, args={"deadline": 10})
    resume = functools.partial(_send, client, Command.RESUME, size)
    drains: dict[str, int] = {}
    resumes: dict[str, int] = {}
    figures: dict[str, Any] = {
        "ping": count(admin, functools.partial(_send, client, Command.PING, size), size, runs),
        "status_request": count(
            admin, functools.partial(_send, client, Command.STATUS, size), size, runs
        ),
        "status_registry_read": count(admin, client.live, size, runs),
    }
    for _ in range(runs):
        time.sleep(SETTLE_S)
        for target, call in ((drains, drain), (resumes, resume)):
            admin.config_resetstat()
            call()
            _add(target, admin)
            time.sleep(SETTLE_S)
    figures["drain"] = _per_request(drains, size, runs)
    figures["resume"] = _per_request(resumes, size, runs)
    return figures


# -- ping against the floor -------------------------------------------------------------------


def ping_vs_floor(url: str, redis_pid: int, size: int) -> dict[str, Any]:
    """drainctl and the floor pinging ``size`` listeners (echoes), in alternating blocks."""
    hosts, per_host = PING_LAYOUTS[size]
    app = new_app()
    admin = redis.Redis.from_url(url)
    me = [os.getpid()]
    with contextlib.ExitStack() as stack:
        fleet = stack.enter_context(ListenerFleet(url, app, hosts, per_host))
        echoes = stack.enter_context(EchoFleet(url, f"floor-{app}", hosts, per_host))
        client = ControlClient(Settings(redis_url=url, app=app))
        stack.callback(client.client.close)
        floor = FloorRequester(url, echoes.inboxes, f"floor-{app}")
        stack.callback(floor.close)
        wait_until(lambda: len(client.live()) == size, 30, f"{size} listeners")
        ours = Sampler(
            functools.partial(_send, client, Command.PING, size),
            {"requester": me, "listeners": fleet.pids, "redis": [redis_pid]},
        )
        theirs = Sampler(floor.ping, {"requester": me, "echoes": echoes.pids, "redis": [redis_pid]})
        interleave([ours, theirs], pick(200, 200 if size <= 4 else 60))
        counts = {
            "floor_ping": count(admin, floor.ping, size, pick(20, 5)),
            **drainctl_counts(admin, client, size),
        }
    admin.close()
    p50, floor_p50 = statistics.median(ours.samples), statistics.median(theirs.samples)
    result = {
        "listeners": size,
        "processes": hosts,
        "drainctl": latency(ours.samples),
        "floor": latency(theirs.samples),
        "ratio_to_floor": round(p50 / floor_p50, 2),
        "cpu_per_request": {"drainctl": ours.cpu_per_call(), "floor": theirs.cpu_per_call()},
        "commands": counts,
    }
    progress(
        f"ping to {size}: drainctl p50 {ms(p50)} ms, floor {ms(floor_p50)} ms "
        f"({result['ratio_to_floor']}x); commands/listener {counts['ping']['per_listener']}"
    )
    return result


# -- drain at 500 -----------------------------------------------------------------------------


def drain_at(url: str, size: int) -> dict[str, Any]:
    """Drain to ``size`` listeners at rest: library, slowest reply, and the CLI."""
    hosts, per_host = DRAIN_LAYOUTS[size]
    app = new_app()
    with ListenerFleet(url, app, hosts, per_host):
        client = ControlClient(Settings(redis_url=url, app=app))
        wait_until(lambda: len(client.live()) == size, 60, f"{size} listeners")
        alls, slowest = [], []
        for index in range(pick(15, 4) + 1):
            started = time.perf_counter()
            outcome = _send(client, Command.DRAIN, size, args={"deadline": 10})
            elapsed = time.perf_counter() - started
            _send(client, Command.RESUME, size)
            time.sleep(SETTLE_S)
            if index:  # the first is a warm-up
                alls.append(elapsed)
                slowest.append(max(outcome.latency.values()))
        argv = [str(BIN / "drainctl"), "--redis-url", url, "--app", app]
        argv += ["drain", "--deadline", "10"]

        def resumed() -> None:
            _send(client, Command.RESUME, size)
            time.sleep(SETTLE_S)

        cli = []
        for _ in range(pick(8, 3)):
            cli += time_command(argv, 1, warmup=0)
            resumed()
        client.client.close()
    result = {
        "listeners": size,
        "processes": hosts,
        "library_all_acked": latency(alls),
        "slowest_reply": latency(slowest),
        "cli": median_ms(cli),
    }
    progress(
        f"drain to {size}: library p50 {result['library_all_acked']['p50_ms']} ms, "
        f"CLI {result['cli']['median_ms']} ms"
    )
    return result


def run() -> dict[str, Any]:
    """Ping against the floor at 4 and 200, command counts, and the drain at 500."""
    with redis_server() as server:
        pid = server.process.pid if server.process else 0
        pings = {str(n): ping_vs_floor(server.url, pid, n) for n in PING_LAYOUTS}
        drains = {str(n): drain_at(server.url, n) for n in DRAIN_LAYOUTS}
    lib500 = drains["500"]["library_all_acked"]["p50_ms"]
    cli500 = drains["500"]["cli"]["median_ms"]
    growth = round(
        drains["500"]["slowest_reply"]["p50_ms"] / drains["200"]["slowest_reply"]["p50_ms"], 2
    )
    worst = max(
        pings[n]["commands"][kind]["per_listener"]
        for n in pings
        for kind in ("ping", "status_request", "status_registry_read", "drain", "resume")
    )
    return {
        "ping": pings,
        "drain": drains,
        "slowest_reply_growth_200_to_500": growth,
        "targets": {
            "ping_4_within_1.5x_floor": _at_most(pings["4"]["ratio_to_floor"], 1.5),
            "ping_200_within_1.5x_floor": _at_most(pings["200"]["ratio_to_floor"], 1.5),
            "at_most_4_commands_per_listener": {"value": worst, "met": worst <= 4},
            "drain_500_library_under_250ms": {"value_ms": lib500, "met": lib500 < 250},
            "drain_500_cli_under_400ms": {"value_ms": cli500, "met": cli500 < 400},
            "slowest_reply_grows_at_most_2.5x": _at_most(growth, 2.5),
        },
    }


def _at_most(value: float, limit: float) -> dict[str, Any]:
    return {"ratio": value, "met": value <= limit}


if __name__ == "__main__":
    standalone(run)
