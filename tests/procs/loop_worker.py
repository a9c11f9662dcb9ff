"""A host process for tests: a hand-written loop of fake jobs around a ControlListener.

Env: DRAINCTL_APP, DRAINCTL_REDIS_URL, DRAINCTL_PROCESS_TYPE, JOB_SECONDS (default 0.05),
HEARTBEAT (default 0.5). Prints ``ready <instance_id>`` once registered, and ``alive N`` lines
as jobs complete so tests can see the host kept running.
"""

from __future__ import annotations

import os
import sys
import time

from drainctl import ControlListener, JobsAdapter
from drainctl.config import Settings


def main() -> None:
    job_seconds = float(os.environ.get("JOB_SECONDS", "0.05"))
    settings = Settings.from_env(heartbeat_interval=float(os.environ.get("HEARTBEAT", "0.5")))
    jobs = JobsAdapter()
    listener = ControlListener(settings=settings, adapter=jobs).start()
    print("ready", listener.identity.instance_id, flush=True)
    done = 0
    while True:
        if not jobs.wait_until_accepting(timeout=0.5):
            continue
        job = jobs.start(f"fake-{done}")
        if job is None:
            continue
        with job:
            time.sleep(job_seconds)
        done += 1
        if done % 10 == 0:
            print("alive", done, flush=True)


if __name__ == "__main__":
    sys.exit(main())
