"""Start test host processes and wait until they are registered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


def spawn_loop_worker(
    redis_url: str,
    app: str,
    process_type: str = "worker",
    *,
    stderr: IO[bytes] | None = None,
    **env: str,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``examples/fake_jobs.py``; return the process and its instance id."""
    full_env = {
        **os.environ,
        "DRAINCTL_APP": app,
        "DRAINCTL_REDIS_URL": redis_url,
        "DRAINCTL_PROCESS_TYPE": process_type,
        "DRAINCTL_HEARTBEAT_INTERVAL": "0.5",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "fake_jobs.py")],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        proc.kill()
        raise RuntimeError(f"loop worker did not start: {line!r}")
    return proc, line.split()[1]


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a host process and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()
