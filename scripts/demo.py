"""The drainctl demo: a short tour of the CLI, then the same deploy done two ways.

Prelude: a clock and a worker (examples/fake_jobs.py) driven by status, ping, drain, resume.
Main act (scripts/demo_deploys.py): examples/demoapp on the local Heroku-like platform, a new
commit deployed with plain `git push`, then with `drainctl deploy`; one JSON line per run.

Everything it starts (a private redis-server in a temp dir, the app's processes) is stopped and
removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.demo_deploys import story  # noqa: E402 - needs the repo root on sys.path
from tests.redis_server import RedisServer  # noqa: E402

APP = "demo"
LOSSES = ("jobs_lost", "jobs_duplicated", "runs_missed", "runs_duplicated")


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def start_process(redis_url: str, process_type: str, dyno: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DRAINCTL_APP": APP,
        "DRAINCTL_REDIS_URL": redis_url,
        "DRAINCTL_PROCESS_TYPE": process_type,
        "DYNO": dyno,
        "DRAINCTL_RELEASE": "v1",
        "DRAINCTL_HEARTBEAT_INTERVAL": "1",
        "JOB_SECONDS": "0.5",
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "fake_jobs.py")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    print(f"started {dyno}: {proc.stdout.readline().strip()}", flush=True)
    return proc


def drainctl(redis_url: str, *args: str) -> int:
    print(f"$ drainctl {' '.join(args)}", flush=True)
    command = [str(ROOT / ".venv" / "bin" / "drainctl"), "--redis-url", redis_url, "--app", APP]
    return subprocess.run([*command, *args], check=False).returncode


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
        drainctl_run = lines[-1]
        clean = all(drainctl_run[k] == 0 for k in LOSSES) and drainctl_run["deploy_exit"] == 0
        return max([*codes, 0 if clean else 1])
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
