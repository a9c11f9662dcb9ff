"""Real worker processes for the end-to-end tests: the RQ, Celery and hand-written demo workers.

Each runs as a subprocess of the repository's Python with the test's app and Redis, logs to a
file (shown when a test fails), and is found in the drainctl registry by its pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import redis

from drainctl.channel import ControlClient, Outcome, Target
from drainctl.config import Settings
from drainctl.protocol import Command
from drainctl.registry import InstanceRecord
from examples.demoapp import ledger
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[1]


def command(kind: str, extra: list[str]) -> list[str]:
    """The command line that starts a worker of this kind."""
    python = sys.executable
    celery = "-A examples.demoapp.celery_app worker -c 2 --loglevel INFO"
    celery += " --without-mingle --without-gossip --without-heartbeat"
    commands = {
        "rq": [python, "-m", "drainctl", "rq-worker", "--grace", "3", "--margin", "1"],
        "celery": [python, "-m", "celery", *celery.split(), "-n", f"w{uuid.uuid4().hex[:6]}@%h"],
        "loop": [python, "-m", "examples.demoapp.worker"],
    }
    return commands[kind] + extra


class WorkerProcess:
    """One worker subprocess of ``kind`` ("rq", "celery" or "loop") for ``settings.app``."""

    def __init__(self, kind: str, settings: Settings, log_dir: Path, **env: str) -> None:
        self.kind = kind
        self.settings = settings
        self.app = settings.require_app()
        self.log = log_dir / f"{kind}-{uuid.uuid4().hex[:6]}.log"
        self.env = {
            **os.environ,
            "DRAINCTL_APP": self.app,
            "REDIS_URL": settings.redis_url,
            "DRAINCTL_PROCESS_TYPE": "worker",
            "DRAINCTL_HEARTBEAT_INTERVAL": str(settings.heartbeat_interval),
            "DEMO_QUEUE": self.app,
            "DEMO_GRACE": "3",
            "DEMO_MARGIN": "1",
            "DEMO_POP_TIMEOUT": "1",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.client = ControlClient(settings)

    def start(self, *extra: str) -> WorkerProcess:
        """Start and wait until its listener is registered."""
        args = command(self.kind, [self.app, *extra] if self.kind == "rq" else list(extra))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self.record, 30, f"{self.kind} worker to register (log: {self.log})")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def record(self) -> InstanceRecord | None:
        """Its registry entry, if it is registered."""
        return next((r for r in self.client.live() if r.doc.get("pid") == self.pid), None)

    def doc(self) -> dict[str, Any]:
        """Its current heartbeat document (fails if it is not registered)."""
        record = self.record()
        assert record is not None, f"{self.kind} worker is not registered (log: {self.log})"
        return record.doc

    def send(self, command: Command, **args: Any) -> Outcome:
        """Send one control command to this worker only and wait for its reply."""
        record = self.record()
        assert record is not None
        timeout = float(args.get("deadline", 0)) + 20
        return self.client.send(
            command, target=Target(instance_id=record.instance_id), args=args, timeout=timeout
        )

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal to the worker's main process."""
        assert self.process is not None
        self.process.send_signal(signum)

    def signal_all(self, signum: signal.Signals) -> None:
        """Send a signal to every process of the worker, children first (as Heroku does)."""
        main = psutil.Process(self.pid)
        for process in [*main.children(recursive=True), main]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Its exit code."""
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Make sure it is gone (SIGKILL if still running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        """Its output so far."""
        return self.log.read_text(errors="replace")


def runs(client: redis.Redis, app: str) -> dict[str, int]:
    """Completed runs per job id, from the ledger."""
    raw = client.hgetall(ledger.runs_key(app))
    return {k.decode(): int(v) for k, v in raw.items()}


class Harness:
    """One test's app: starts workers, enqueues jobs, reads the ledger; stops workers at the end."""

    def __init__(self, settings: Settings, client: redis.Redis, log_dir: Path) -> None:
        self.settings = settings
        self.app = settings.require_app()
        self.redis = client
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(self, kind: str, *extra: str, **env: str) -> WorkerProcess:
        """Start a worker of ``kind`` and wait until it is registered."""
        worker = WorkerProcess(kind, self.settings, self.log_dir, **env)
        self.workers.append(worker)
        return worker.start(*extra)

    def push(self, kind: str, times: list[float], fail_every: int = 0) -> list[str]:
        """Enqueue one demo job per duration on the test's own queue; their ids."""
        from examples.demoapp.producer import enqueue

        return enqueue(self.redis, self.app, kind, times, queue=self.app, fail_every=fail_every)

    def runs(self) -> dict[str, int]:
        """Completed runs per job id."""
        return runs(self.redis, self.app)

    def completed(self, ids: list[str]) -> bool:
        """Whether every job of ``ids`` has completed at least once."""
        done = self.runs()
        return all(done.get(job_id, 0) >= 1 for job_id in ids)

    def wait_completed(self, ids: list[str], timeout: float = 30.0) -> None:
        """Wait until every job of ``ids`` has completed."""
        wait_for(lambda: self.completed(ids), timeout, f"{len(ids)} job(s) to complete")

    def close(self) -> None:
        """Kill whatever is still running."""
        for worker in self.workers:
            worker.stop()
