"""Celery beat test helpers: start ``celery beat`` and workers of ``tests/beat_app.py``, read the
ledger of what ran (entry and due time, written by the ledger task)."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from drainctl.keys import Keys
from drainctl.registry import Registry
from tests.processes import ROOT

CELERY = [sys.executable, "-m", "celery", "-A", "tests.beat_app"]


def spawn(
    kind: str, redis_url: str, app: str, release: str, log: Path, *extra: str, **env: str
) -> subprocess.Popen[str]:
    """Start ``celery beat`` (kind "beat") or a solo-pool worker (kind "worker", ``-B`` in
    ``extra`` for an embedded beat) for ``app`` as ``release``, logging to ``log``."""
    args = {
        "beat": ["beat", "--loglevel", "INFO"],
        "worker": [
            "worker",
            "-P",
            "solo",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
            "-n",
            f"w{uuid.uuid4().hex[:6]}@%h",
        ],
    }[kind]
    full_env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DRAINCTL_APP": app,
        "BEAT_APP": app,
        "DRAINCTL_RELEASE": release,
        "DRAINCTL_PROCESS_TYPE": "beat",
        "DRAINCTL_HEARTBEAT_INTERVAL": "0.3",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    with log.open("a") as out:
        # A session of its own: `stop` kills the group, with the beat process `worker --beat`
        # forks (SIGKILL to the worker alone left that child running, orphaned).
        return subprocess.Popen(
            [*CELERY, *args, *extra],
            env=full_env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
            text=True,
            start_new_session=True,
        )


def ledger(client: redis.Redis, app: str) -> collections.Counter[str]:
    """``entry@due_ms`` -> how many times the ledger task ran it."""
    raw = client.hgetall(f"beatledger:{app}")
    return collections.Counter({key.decode(): int(value) for key, value in raw.items()})


def grid(runs: collections.Counter[str], entry: str, step_ms: int) -> tuple[int, list[str], int]:
    """(runs of ``entry`` seen, the duplicated ones, due times missed between first and last)."""
    times = sorted(int(label.split("@")[1]) for label in runs if label.startswith(f"{entry}@"))
    duplicates = [label for label, n in runs.items() if label.startswith(f"{entry}@") and n > 1]
    if not times:
        return 0, duplicates, 0
    missed = len(range(times[0], times[-1] + 1, step_ms)) - len(times)
    return len(times), duplicates, missed


def beat_docs(client: redis.Redis, app: str) -> dict[int, dict[str, object]]:
    """The live heartbeat documents of the beats, by pid."""
    return {
        int(str(r.doc.get("pid"))): r.doc
        for r in Registry(client, app).live()
        if r.process_type == "beat"
    }


def lease_token(client: redis.Redis, app: str) -> int | None:
    """The current lease's fencing token, if anyone holds it."""
    raw = client.hget(Keys(app).clock_lease, "token")
    return None if raw is None else int(raw)


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill the process and any child it left (its whole session), and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
