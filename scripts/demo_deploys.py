"""The demo's main act: the same new commit deployed with plain `git push`, then `drainctl deploy`.

Each run gets its own app on a fresh local Heroku-like platform (``drainctl.localplatform``) with
``examples/demoapp`` (clock, worker, producer) released as v1. A new commit is deployed, the
producer is paused, the queue is left to empty, and the run is counted from the ledgers the jobs
and scheduled runs write in Redis. One JSON line per run ends the demo.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.heroku import LocalHeroku  # noqa: E402 - needs the repo root on sys.path
from tests.polling import wait_for  # noqa: E402

GRACE = 3.0  # SIGTERM to SIGKILL on this platform (Heroku: 30 s); some jobs run up to 6 s
TYPES = ("clock", "worker", "producer")
INTERVALS = {"tick": 1.0, "report": 5.0}
APP_ENV = {
    # The clock's misfire grace (whole seconds): runs held back by a drain still fire, late.
    "DEMO_MISFIRE_GRACE": "60",
    # The worker's SIGTERM budget: longer than the platform's, so under plain git push a job
    # that outlasts the grace ends in a SIGKILL, as on Heroku when a job outlasts the 30 s.
    "DEMO_GRACE": "60",
    "DEMO_MARGIN": "0.5",
    "DEMO_TICK_SECONDS": str(INTERVALS["tick"]),
    "DEMO_REPORT_SECONDS": str(INTERVALS["report"]),
    "DEMO_REPORT_DURATION": "2",
    "DRAINCTL_LEASE_TTL": "5",
    "DEMO_FEED_SECONDS": "1.0",
}
RECOVERED = re.compile(r"recovered (\d+) job\(s\) from dead workers")
LONG_JOB_S = 8.0  # running when the deploy starts; longer than the grace
DEPLOY_ARGS = ("--drain-deadline", "10", "--stable-for", "2", "--zombie-grace", str(GRACE + 4))


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def stage_app(into: Path) -> Path:
    """The app's repository content: the Procfile at its root, the ``examples`` package."""
    shutil.copytree(ROOT / "examples", into / "examples", ignore=shutil.ignore_patterns("__py*"))
    shutil.copy(ROOT / "examples" / "demoapp" / "Procfile", into / "Procfile")
    return into


def run(mode: str, redis_url: str, workdir: Path, source: Path) -> dict[str, Any]:
    """Release v1, deploy v2 the ``mode`` way, let the queue empty, count from the ledgers."""
    heroku = LocalHeroku(workdir / mode, redis_url, f"demo-{mode}", source=source)
    try:
        banner(f"{mode}: release v1 of app {heroku.app} (clock, worker, producer)")
        # A config var, as `heroku config:set`: the demo's ledger module reads DRAINCTL_APP.
        heroku.start(grace=GRACE, env=APP_ENV | {"DRAINCTL_APP": heroku.app}, types=TYPES)
        ledger = Ledger(heroku)
        wait_for(lambda: ledger.completed() >= 10, 60, "v1 to complete 10 jobs")
        print(f"v1 is working: {ledger.completed()} jobs done so far", flush=True)
        heroku.commit("v2")
        banner(f"{mode}: deploy v2 while a {LONG_JOB_S:g}s job runs")
        ledger.start_long_job(LONG_JOB_S)
        exit_code, phases = DEPLOYS[mode](heroku)
        heroku.wait_for_release("v2", TYPES)
        done = ledger.completed()
        wait_for(lambda: ledger.completed() >= done + 5, 60, "v2 to complete 5 jobs")
        banner(f"{mode}: pause the producer, let the queue empty, count")
        heroku.drainctl("drain", "-t", "producer", "--deadline", "5")
        try:
            wait_for(ledger.settled, 20, "every enqueued job to complete")
        except AssertionError:
            print("some jobs never completed: they are counted as lost", flush=True)
        print(f"{mode}: {killed(heroku)}; {recovered(heroku)}", flush=True)
        return {"mode": mode, "deploy_exit": exit_code, **ledger.counts(), "phases_s": phases}
    finally:
        heroku.stop()


def killed(heroku: LocalHeroku) -> str:
    """What the platform had to SIGKILL (from its log): work cut off at the grace period."""
    log = (heroku.root / "supervisor.log").read_text()
    dynos = sorted({line.split(": ")[1] for line in log.splitlines() if "SIGKILL" in line})
    if not dynos:
        return "every old process exited on its own after SIGTERM (nothing SIGKILLed)"
    return f"SIGKILLed {GRACE:g}s after SIGTERM, still busy: {', '.join(dynos)}"


def recovered(heroku: LocalHeroku) -> str:
    """Jobs cut off mid-run that a new worker took back from a dead one's processing list."""
    logs = (log.read_text() for log in heroku.layout.logs.glob("*worker*.log"))
    counts = [int(m.group(1)) for text in logs for m in RECOVERED.finditer(text)]
    return f"{sum(counts)} job(s) cut off mid-run and run again from the start"


def plain_git_push(heroku: LocalHeroku) -> tuple[int, dict[str, float | None]]:
    """``git push``: the platform SIGTERMs v1 and starts v2 at once; nothing drains first."""
    print("$ git push heroku HEAD:main", flush=True)
    started = time.monotonic()
    pushed = subprocess.run(
        ["git", "push", "heroku", "HEAD:main"], cwd=heroku.src, env=heroku.env, check=False
    )
    push_s = time.monotonic() - started
    heroku.wait_for_release("v2", TYPES)
    verify_s = time.monotonic() - started - push_s
    return pushed.returncode, {"drain": 0.0, "push": round(push_s, 3), "verify": round(verify_s, 3)}


def drainctl_deploy(heroku: LocalHeroku) -> tuple[int, dict[str, float | None]]:
    """``drainctl deploy``: fence and drain v1, push, verify v2 (progress shown as it goes)."""
    print(f"$ drainctl deploy --remote heroku {' '.join(DEPLOY_ARGS)} --json", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "drainctl", "--app", heroku.app, "deploy", "--remote", "heroku",
         *DEPLOY_ARGS, "--json"],
        cwd=heroku.src, env=heroku.env, stdout=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    phases = summary["phases_s"]
    return done.returncode, {k: phases.get(k) for k in ("drain", "push", "verify")}


DEPLOYS = {"git-push": plain_git_push, "drainctl": drainctl_deploy}


class Ledger:
    """The demo app's ledgers in Redis (written by the jobs and the scheduled runs)."""

    def __init__(self, heroku: LocalHeroku) -> None:
        self.redis = heroku.redis
        self.prefix = f"demo:{heroku.app}:ledger:"
        self.queue = f"demo:{heroku.app}:jobs"

    def _hash(self, name: str) -> dict[str, int]:
        raw = self.redis.hgetall(self.prefix + name)
        return {k.decode(): int(v) for k, v in raw.items()}

    def start_long_job(self, seconds: float) -> None:
        """Put a long job first in line (the payload format of examples/demoapp/worker.py) and
        wait until a worker has taken it."""
        job_id = f"long-{uuid.uuid4().hex[:8]}"
        payload = json.dumps({"id": job_id, "duration": seconds, "fail": False})
        self.redis.hset(self.prefix + "enqueued", job_id, 1)
        self.redis.lpush(self.queue, payload)
        wait_for(lambda: self.redis.lpos(self.queue, payload) is None, 30, "the long job to start")

    def completed(self) -> int:
        """Distinct jobs that completed at least once."""
        return len(self._hash("runs"))

    def settled(self) -> bool:
        """Every enqueued job has completed."""
        return set(self._hash("enqueued")) <= set(self._hash("runs"))

    def counts(self) -> dict[str, int]:
        """The figures of the final JSON line."""
        enqueued, runs, fires = self._hash("enqueued"), self._hash("runs"), self._hash("fires")
        return {
            "jobs_enqueued": len(enqueued),
            "jobs_completed": sum(1 for job in enqueued if runs.get(job, 0) >= 1),
            "jobs_lost": sum(1 for job in enqueued if runs.get(job, 0) == 0),
            "jobs_duplicated": sum(n - 1 for n in runs.values() if n > 1),
            "scheduled_runs": len(fires),
            "runs_missed": missed(fires),
            "runs_duplicated": sum(n - 1 for n in fires.values() if n > 1),
        }


def missed(fires: dict[str, int]) -> int:
    """Gaps in each scheduled job's grid between its first and last recorded run."""
    times: dict[str, list[float]] = {}
    for field in fires:
        job_id, _, when = field.partition("@")
        times.setdefault(job_id, []).append(datetime.fromisoformat(when).timestamp())
    gaps: Counter[str] = Counter()
    for job_id, stamps in times.items():
        interval = INTERVALS.get(job_id, 1.0)
        ordered = sorted(stamps)
        gaps[job_id] = sum(round((b - a) / interval) - 1 for a, b in itertools.pairwise(ordered))
    return sum(gaps.values())


def story(redis_url: str) -> list[dict[str, Any]]:
    """Both runs, one after the other; everything they create is removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="drainctl-demo-"))
    try:
        source = stage_app(workdir / "app")
        return [run(mode, redis_url, workdir, source) for mode in DEPLOYS]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
