"""Shared helpers for benchmark modules: a private Redis, listener processes, statistics.

Modules whose name starts with ``_`` are helpers: ``scripts/bench.py`` does not run them.
Each benchmark module runs alone too (``.venv/bin/python scripts/benchmarks/NAME.py [--quick]``)
and prints its JSON; ``standalone(run)`` is that entry point.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Benchmarks reuse the test suite's throwaway redis-server.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402

BIN = Path(sys.executable).parent
QUICK_ENV = "DRAINCTL_BENCH_QUICK"
_STARTED = time.monotonic()


def quick() -> bool:
    """True under ``scripts/bench --quick``: fewer iterations, smaller fleets, shorter windows."""
    return os.environ.get(QUICK_ENV) == "1"


def pick(full: Any, fast: Any) -> Any:
    """``fast`` in quick mode, else ``full``."""
    return fast if quick() else full


def progress(message: str) -> None:
    """Progress goes to stderr: stdout carries only the JSON result."""
    print(f"[bench {time.monotonic() - _STARTED:5.1f}s] {message}", file=sys.stderr, flush=True)


def new_app(prefix: str = "bench") -> str:
    """A fresh app namespace, so measurements never see each other's keys."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def redis_server(*extra_args: str) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, removed afterwards."""
    server = RedisServer(None, *extra_args).start()
    try:
        yield server
    finally:
        server.cleanup()


# -- statistics -----------------------------------------------------------------------------


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded for reading."""
    return round(seconds * 1000, 3)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency(samples: Sequence[float]) -> dict[str, Any]:
    """p50 and p99 in ms of samples in seconds, and how many there were."""
    return {
        "p50_ms": ms(statistics.median(samples)),
        "p99_ms": ms(percentile(samples, 0.99)),
        "n": len(samples),
    }


def median_ms(samples: Sequence[float]) -> dict[str, Any]:
    """Median (and spread) in ms of samples in seconds."""
    return {
        "median_ms": ms(statistics.median(samples)),
        "min_ms": ms(min(samples)),
        "max_ms": ms(max(samples)),
        "n": len(samples),
    }


def ratio(slower: float, faster: float) -> float | None:
    """How many times faster ``faster`` is than ``slower`` (None when not measurable)."""
    return round(slower / faster, 1) if faster > 0 else None


def timed(call: Callable[[], Any], runs: int, warmup: int = 0) -> list[float]:
    """Wall times in seconds of ``runs`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def commandstats(client: Any, skip: frozenset[str] | set[str]) -> dict[str, int]:
    """Calls per command from ``INFO commandstats`` (since start or the last CONFIG
    RESETSTAT), without the commands in ``skip`` (the benchmark's own probes)."""
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    return {name: n for name, n in calls.items() if name not in skip}


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU seconds used so far by the processes ``pids``."""
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


class Sampler:
    """Times calls in blocks and counts the CPU each group of processes spent on them.

    On a machine with few cores, CPU per request bounds latency once every process involved
    competes for the same cores: it tells a slow path from a busy machine. Two samplers run in
    alternating blocks (``interleave``) see the same background load, so their ratio holds even
    when other work shares the machine.
    """

    def __init__(self, call: Callable[[], Any], groups: dict[str, Sequence[int]]) -> None:
        self.call = call
        self.groups = groups
        self.samples: list[float] = []
        self.cpu = dict.fromkeys(groups, 0.0)

    def block(self, runs: int) -> None:
        """Time ``runs`` more calls."""
        before = {name: cpu_seconds(pids) for name, pids in self.groups.items()}
        self.samples += timed(self.call, runs)
        for name, pids in self.groups.items():
            self.cpu[name] += cpu_seconds(pids) - before[name]

    def cpu_per_call(self) -> dict[str, float]:
        """CPU ms per call, by group."""
        runs = max(1, len(self.samples))
        return {f"{name}_ms": ms(seconds / runs) for name, seconds in self.cpu.items()}


def interleave(samplers: Sequence[Sampler], runs: int, blocks: int = 10, warmup: int = 5) -> None:
    """``runs`` calls of each sampler, alternating in ``blocks`` blocks after a warm-up."""
    for sampler in samplers:
        timed(sampler.call, 0, warmup)
    per_block = max(1, runs // blocks)
    for _ in range(blocks):
        for sampler in samplers:
            sampler.block(per_block)


def reap(processes: Sequence[subprocess.Popen[Any]], timeout: float) -> None:
    """Wait for processes asked to stop; kill whichever is still there after ``timeout``."""
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_command(argv: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run a command to completion, output discarded; raises when it fails."""
    subprocess.run(
        list(argv),
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
        cwd=HERE,
    )


def time_command(
    argv: Sequence[str], runs: int, env: dict[str, str] | None = None, warmup: int = 1
) -> list[float]:
    """Wall times in seconds of a fresh process running ``argv``, ``runs`` times."""
    return timed(lambda: run_command(argv, env), runs, warmup)


# -- listener processes ---------------------------------------------------------------------


class ListenerFleet:
    """``hosts`` processes, each running ``per_host`` ControlListeners (see _listener_host.py).

    Each host prints one JSON line when its listeners are registered and stops them cleanly when
    its stdin closes, so a fleet never leaves registry entries behind.
    """

    def __init__(self, redis_url: str, app: str, hosts: int, per_host: int, *args: str) -> None:
        self.redis_url = redis_url
        self.app = app
        self.hosts = hosts
        self.per_host = per_host
        self.args = list(args)
        self.processes: list[subprocess.Popen[str]] = []
        self.ready: list[dict[str, Any]] = []

    @property
    def size(self) -> int:
        """Listeners in the whole fleet."""
        return self.hosts * self.per_host

    def __enter__(self) -> ListenerFleet:
        try:
            for index in range(self.hosts):
                self.processes.append(self._spawn(index))
            self.ready = [_ready_line(p) for p in self.processes]
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, index: int) -> subprocess.Popen[str]:
        argv = [sys.executable, str(HERE / "_listener_host.py"), "--redis-url", self.redis_url]
        argv += ["--app", self.app, "--count", str(self.per_host), "--dyno", f"bench.{index + 1}"]
        return subprocess.Popen(
            argv + self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    @property
    def pids(self) -> list[int]:
        """Process ids of the running hosts."""
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        """Close every host's stdin (a clean stop) and wait; kill whatever hangs."""
        for process in self.processes:
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()
        reap(self.processes, 15)
        self.processes = []


def _ready_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    stream: IO[str] | None = process.stdout
    line = stream.readline() if stream is not None else ""
    if not line:
        raise RuntimeError(f"listener host {process.pid} exited before it was ready")
    return dict(json.loads(line))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; raise naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# -- entry point ----------------------------------------------------------------------------


def standalone(run: Callable[[], dict[str, Any]]) -> None:
    """Run one module alone: ``--quick`` as in scripts/bench, JSON on stdout."""
    if "--quick" in sys.argv[1:]:
        os.environ[QUICK_ENV] = "1"
    print(json.dumps(run(), indent=2))
