"""The smallest drainctl host: a hand-written loop of short fake jobs around a ControlListener.

Run it as any process type of a demo app::

    DRAINCTL_APP=demo DRAINCTL_PROCESS_TYPE=worker REDIS_URL=redis://localhost:6379 \
        python examples/fake_jobs.py

Env: the usual drainctl variables (see README), JOB_SECONDS (default 0.05) and
DRAINCTL_HEARTBEAT_INTERVAL. Prints ``ready <instance_id>`` once registered and ``alive N``
every ten jobs, which the demo and the tests read.
"""

from __future__ import annotations

import os
import sys
import time

from drainctl import ControlListener, JobsAdapter


def main() -> None:
    job_seconds = float(os.environ.get("JOB_SECONDS", "0.05"))
    jobs = JobsAdapter()
    listener = ControlListener.from_env(adapter=jobs).start()
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
