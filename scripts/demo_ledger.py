"""Reading the demo app's ledgers (``examples/demoapp/ledger.py``) into the figures of a JSON line.

Jobs: every id the demo enqueued, how many runs of it started and how many completed. Scheduled
runs: per ``{job}@{scheduled run time}``, how many runs started and completed; the runs expected
are the points of each job's grid from its first run to the cut-off.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from datetime import datetime

import redis

from examples.demoapp import ledger


class Ledger:
    """One app's ledgers in Redis, and the demo's way of enqueueing jobs."""

    def __init__(self, client: redis.Redis, app: str) -> None:
        self.client, self.app = client, app
        self.queue = f"demo:{app}:jobs"

    def _hash(self, key: str) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.client.hgetall(key).items()}

    def enqueue(self, seconds: float, name: str = "job") -> str:
        """Enqueue one job of ``seconds`` (the payload of both demo workers); returns its id."""
        job_id = f"{name}-{uuid.uuid4().hex[:6]}"
        ledger.record_enqueued(self.client, self.app, [job_id])
        self.client.rpush(self.queue, json.dumps({"id": job_id, "duration": seconds}))
        return job_id

    def started(self, job_id: str) -> bool:
        """A worker has begun ``job_id``."""
        return bool(self.client.hget(ledger.starts_key(self.app), job_id))

    def completed(self, job_ids: list[str]) -> bool:
        """Each of ``job_ids`` completed at least once."""
        runs = self._hash(ledger.runs_key(self.app))
        return all(runs.get(job_id, 0) for job_id in job_ids)

    def report_running(self) -> bool:
        """A ``report`` run has started and not finished: a deploy now cuts into it."""
        started = self._hash(ledger.fire_starts_key(self.app))
        fired = self._hash(ledger.fires_key(self.app))
        return any(label not in fired for label in started)

    def ticked(self) -> bool:
        """The clock has fired at least once."""
        return bool(self.client.hlen(ledger.fires_key(self.app)))

    def job_counts(self) -> dict[str, int]:
        """Jobs enqueued, completed, lost, duplicated, cut off (runs started, never finished)
        and re-run (jobs started more than once)."""
        enqueued = self._hash(ledger.enqueued_key(self.app))
        runs = self._hash(ledger.runs_key(self.app))
        starts = self._hash(ledger.starts_key(self.app))
        return {
            "jobs_enqueued": len(enqueued),
            "jobs_completed": sum(1 for job in enqueued if runs.get(job, 0) >= 1),
            "jobs_lost": sum(1 for job in enqueued if runs.get(job, 0) == 0),
            "jobs_duplicated": sum(n - 1 for n in runs.values() if n > 1),
            "jobs_cut_off": sum(max(0, n - runs.get(job, 0)) for job, n in starts.items()),
            "jobs_rerun": sum(1 for n in starts.values() if n > 1),
        }

    def run_counts(self, intervals: dict[str, float], cutoff: float) -> dict[str, int]:
        """Scheduled runs expected, fired (completed), missed and duplicated, of the runs due
        up to ``cutoff`` (Unix time)."""
        fired = self._hash(ledger.fires_key(self.app))
        started = self._hash(ledger.fire_starts_key(self.app))
        counts = {"runs_expected": 0, "runs_fired": 0, "runs_missed": 0, "runs_duplicated": 0}
        for job_id, interval in intervals.items():
            seen = _runs_of(job_id, fired.keys() | started.keys(), cutoff)
            if not seen:
                continue
            expected = math.floor((cutoff - min(seen)) / interval) + 1
            done = {label: n for label, n in fired.items() if label in seen.values()}
            counts["runs_expected"] += expected
            counts["runs_fired"] += len(done)
            counts["runs_missed"] += expected - len(done)
            counts["runs_duplicated"] += sum(n - 1 for n in done.values())
        return counts


def _runs_of(job_id: str, labels: Iterable[str], cutoff: float) -> dict[float, str]:
    """Scheduled time (Unix seconds) -> ledger label, for the runs of one job up to ``cutoff``."""
    runs: dict[float, str] = {}
    for label in labels:
        name, _, when = label.partition("@")
        stamp = datetime.fromisoformat(when).timestamp()
        if name == job_id and stamp <= cutoff:
            runs[stamp] = label
    return runs
