"""The demo's main act: the app before drainctl, deployed with plain ``git push``, against the same
app with drainctl, deployed with ``drainctl deploy``, on the same local platform, the same way.

Each run gets a fresh app on ``python -m drainctl.localplatform`` (grace 4 s from SIGTERM to
SIGKILL, old and new processes overlapping, one clock and three workers) and two deploys:

1. v1 -> v2 while the clock's ``report`` run and two jobs (8 s, longer than the grace, and
   3.5 s) are in progress;
2. v2 -> v3 with the platform's ``fault --zombie clock``: the old clock is left running, as a
   dyno the platform lost track of.

Then a last batch of jobs, and one JSON line counted from the ledgers the jobs and scheduled runs
write in Redis. ``git-push`` runs ``examples/plainapp`` (plain APScheduler, a plain Redis-list
worker: no drainctl); ``drainctl`` runs ``examples/demoapp`` (the same jobs with drainctl's
clock adapter, reliable queue and listener).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.demo_ledger import Ledger  # noqa: E402 - needs the repo root on sys.path
from scripts.demo_platform import Platform, wait_for  # noqa: E402

APPS = {"git-push": "plainapp", "drainctl": "demoapp"}
GRACE = 4.0
LONG_S, MEDIUM_S = 8.0, 3.5  # in progress at the first deploy: longer, and shorter, than GRACE
INTERVALS = {"tick": 1.0, "report": 5.0}
REPORT_S = 3.0
APP_ENV = {
    "DEMO_TICK_SECONDS": str(INTERVALS["tick"]),
    "DEMO_REPORT_SECONDS": str(INTERVALS["report"]),
    "DEMO_REPORT_DURATION": str(REPORT_S),
    "DEMO_MISFIRE_GRACE": "60",  # drainctl's clock fires the runs a drain held back, late
    "DEMO_GRACE": str(GRACE),
    "DEMO_MARGIN": "0.5",
    "DEMO_POP_TIMEOUT": "1",
    "DRAINCTL_LEASE_TTL": "5",
    "DRAINCTL_HEARTBEAT_INTERVAL": "0.5",
}
PLATFORM_OPTIONS = (
    "--grace", str(GRACE), "--backoff-base", "0.2", "--backoff-max", "1",
    "--scale", "worker=3", "--scale", "producer=0",
    *(arg for key, value in APP_ENV.items() for arg in ("--env", f"{key}={value}")),
)  # fmt: skip
DEPLOY_ARGS = (
    "--remote", "heroku", "-t", "clock", "-t", "worker", "--drain-deadline", "10",
    "--stable-for", "2", "--zombie-grace", "6", "--verify-timeout", "60",
)  # fmt: skip
SHORT_JOBS = (0.1, 0.3, 0.2, 0.4, 0.1, 0.2, 0.3, 0.1, 0.2)
BOLD = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def banner(text: str) -> None:
    """A heading; bold only on a terminal, so piped output has no escape codes."""
    print(f"\n\033[1m== {text}\033[0m" if BOLD else f"\n== {text}", flush=True)


def git_push(platform: Platform) -> dict[str, Any]:
    """Plain ``git push``: the platform SIGTERMs the old release and starts the new one at once."""
    started = time.monotonic()
    done = platform.command("git", "push", "--quiet", "heroku", "HEAD:main")
    return {"exit": done.returncode, "seconds": round(time.monotonic() - started, 1)}


def drainctl_deploy(platform: Platform) -> dict[str, Any]:
    """``drainctl deploy``: fence and drain the old release, push, verify the new one."""
    started = time.monotonic()
    done = platform.drainctl("--json", "deploy", *DEPLOY_ARGS)
    seconds = round(time.monotonic() - started, 1)
    summary = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    zombies = [z.get("dyno") for z in summary.get("verify", {}).get("zombies", [])]
    return {"exit": done.returncode, "seconds": seconds} | ({"zombies": zombies} if zombies else {})


DEPLOYS: dict[str, Callable[[Platform], dict[str, Any]]] = {
    "git-push": git_push,
    "drainctl": drainctl_deploy,
}


def registered(platform: Platform, count: int) -> bool:
    """``drainctl status`` lists ``count`` running instances (drainctl's app only)."""
    return sum(1 for doc in platform.status() if doc.get("state") == "running") >= count


def release_v1(mode: str, platform: Platform, book: Ledger) -> None:
    """Create the app, push v1, and wait until its clock fires and its workers work."""
    banner(f"{mode}: examples/{APPS[mode]} released as v1 of app {platform.app}")
    source = stage(platform.root / "app", APPS[mode])
    platform.create(source, *PLATFORM_OPTIONS)
    platform.commit("v1")
    platform.command("git", "push", "--quiet", "heroku", "HEAD:main")
    wait_for(lambda: platform.running("v1"), 60, "v1 to run")
    jobs = [book.enqueue(seconds) for seconds in SHORT_JOBS]
    wait_for(lambda: book.completed(jobs) and book.ticked(), 60, "v1 to work")
    if mode == "drainctl":
        wait_for(lambda: registered(platform, 4), 30, "every v1 process to register")
    platform.show_log()
    print(f"v1 is up: clock ticking, {len(jobs)} jobs done", flush=True)


def deploy_mid_work(mode: str, platform: Platform, book: Ledger) -> dict[str, Any]:
    """v1 -> v2 while ``report`` and two jobs run (one longer than the grace)."""
    platform.commit("v2")
    wait_for(book.report_running, 2 * INTERVALS["report"], "a report run to start")
    long_job = book.enqueue(LONG_S, "long")
    wait_for(lambda: book.started(long_job), 10, "the long job to start")
    medium_job = book.enqueue(MEDIUM_S, "medium")
    wait_for(lambda: book.started(medium_job), 10, "the medium job to start")
    banner(f"{mode}: deploy v2 during a report run and {LONG_S:g} s + {MEDIUM_S:g} s jobs")
    outcome = DEPLOYS[mode](platform)
    wait_for(lambda: platform.running("v2"), 60, "v2 alone to run")
    platform.show_log()
    return outcome


def deploy_with_zombie(mode: str, platform: Platform) -> dict[str, Any]:
    """v2 -> v3, the old clock left running by the platform."""
    banner(f"{mode}: deploy v3; the platform leaves the v2 clock running (a zombie)")
    platform.platform("fault", str(platform.dir), "--zombie", "clock")
    platform.commit("v3")
    outcome = DEPLOYS[mode](platform)
    wait_for(lambda: platform.running("v3"), 60, "v3 (and the zombie) alone to run")
    platform.show_log()
    return outcome


def run(mode: str, redis_url: str, workdir: Path) -> dict[str, Any]:
    """Release v1, deploy twice the ``mode`` way, run a last batch, count from the ledgers."""
    platform = Platform(workdir / mode, redis_url, f"demo-{mode}")
    client = redis.Redis.from_url(redis_url)
    book = Ledger(client, platform.app)
    try:
        release_v1(mode, platform, book)
        deploys = [deploy_mid_work(mode, platform, book), deploy_with_zombie(mode, platform)]
        banner(f"{mode}: v3 works a last batch; count")
        jobs = [book.enqueue(seconds) for seconds in SHORT_JOBS]
        wait_for(lambda: book.completed(jobs), 30, "the last batch")
        # Scheduled runs are counted up to now, once the last of them had time to finish.
        cutoff = time.time()
        time.sleep(REPORT_S + 1.0)
        killed = platform.log_lines("SIGKILL")
        print(f"SIGKILLed by the platform after the {GRACE:g} s grace: {len(killed)}", flush=True)
        counts = book.job_counts() | book.run_counts(INTERVALS, cutoff)
        return {"mode": mode, "deploys": deploys, **counts, "sigkilled": len(killed)}
    finally:
        platform.stop()
        # After Ctrl-C the redis-server may be gone already: nothing left to remove there.
        with contextlib.suppress(redis.ConnectionError):
            for key in client.scan_iter(match=f"demo:{platform.app}:*"):
                client.delete(key)
        client.close()


def stage(into: Path, app: str) -> Path:
    """The app's repository: the ``examples`` package, and the app's Procfile at its root."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "examples", into / "examples", ignore=ignore)
    shutil.copy(ROOT / "examples" / app / "Procfile", into / "Procfile")
    return into


def story(redis_url: str) -> list[dict[str, Any]]:
    """Both runs, one after the other; everything they create is removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="drainctl-demo-"))
    try:
        return [run(mode, redis_url, workdir) for mode in APPS]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
