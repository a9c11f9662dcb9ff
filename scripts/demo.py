"""The drainctl demo: a short tour of the CLI, then what drainctl prevents on a deploy.

Prelude: a clock and a worker (examples/fake_jobs.py) driven by status, ping, drain, resume.
Main act (scripts/demo_deploys.py): the app before drainctl deployed with plain `git push`, and
the same app with drainctl deployed with `drainctl deploy`, on the local Heroku-like platform;
one JSON line per run, counted from ledgers in Redis.

Everything it starts (a private redis-server in a temp dir, the app's processes) is stopped and
removed on exit, Ctrl-C included. It uses only its own Redis and apps: DRAINCTL_* variables of
the calling shell reach none of its processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.demo_deploys import banner, story  # noqa: E402 - needs the repo root on sys.path
from scripts.demo_platform import SECRET, RedisServer, clean_env  # noqa: E402

APP = "demo"
HARMS = (
    "jobs_lost", "jobs_duplicated", "jobs_cut_off", "jobs_rerun", "runs_missed", "runs_duplicated",
)  # fmt: skip


def start_process(redis_url: str, process_type: str, dyno: str) -> subprocess.Popen[str]:
    env = clean_env(
        DRAINCTL_APP=APP,
        DRAINCTL_REDIS_URL=redis_url,
        DRAINCTL_PROCESS_TYPE=process_type,
        DYNO=dyno,
        DRAINCTL_RELEASE="v1",
        DRAINCTL_SECRET=SECRET,
        DRAINCTL_HEARTBEAT_INTERVAL="1",
        JOB_SECONDS="0.5",
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "fake_jobs.py")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # killed in order by main(), also after Ctrl-C
    )
    assert proc.stdout is not None
    print(f"started {dyno}: {proc.stdout.readline().strip()}", flush=True)
    return proc


def drainctl(redis_url: str, *args: str) -> int:
    print(f"$ drainctl {' '.join(args)}", flush=True)
    command = [sys.executable, "-m", "drainctl", "--redis-url", redis_url, "--app", APP]
    env = clean_env(DRAINCTL_SECRET=SECRET)
    return subprocess.run([*command, *args], env=env, check=False).returncode


def verdict(lines: list[dict[str, Any]]) -> int:
    """0 when the baseline shows every harm and drainctl none (its first deploy clean); prints
    the two side by side."""
    plain, ours = lines
    shown = all(plain[harm] > 0 for harm in HARMS)
    prevented = all(ours[harm] == 0 for harm in HARMS) and ours["deploys"][0]["exit"] == 0
    for harm in HARMS:
        print(f"{harm:>16}: git push {plain[harm]:>3}   drainctl {ours[harm]:>3}", flush=True)
    if not shown:
        print("the baseline did not show every harm this time: the demo proves less", flush=True)
    return 0 if prevented and shown else 1


def main() -> int:
    server = RedisServer()
    procs: list[subprocess.Popen[str]] = []
    try:
        banner(f"private redis-server on port {server.port}")
        server.start()
        banner("starting the demo app: one clock, one worker (loops of 0.5 s fake jobs)")
        procs = [
            start_process(server.url, "clock", "clock.1"),
            start_process(server.url, "worker", "worker.1"),
        ]
        codes = []
        banner("who is running?")
        codes.append(drainctl(server.url, "status"))
        banner("round trip to each process")
        codes.append(drainctl(server.url, "ping"))
        banner("drain: stop new work, wait for the job in flight, acknowledge")
        codes.append(drainctl(server.url, "drain", "--deadline", "10"))
        codes.append(drainctl(server.url, "status"))
        banner("resume")
        codes.append(drainctl(server.url, "resume"))
        for proc in procs:
            proc.kill()
            proc.wait()
        procs = []
        lines = story(server.url)
        banner("one line per run, counted from the ledgers in Redis")
        for line in lines:
            print(json.dumps(line), flush=True)
        return max([*codes, verdict(lines)])
    except KeyboardInterrupt:
        return 130
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        server.cleanup()
        print("cleaned up: processes stopped, redis-server and its temp dir removed", flush=True)


if __name__ == "__main__":
    sys.exit(main())
