"""The smallest drainctl host: a hand-written loop of short fake jobs around a ControlListener.

Run it as any process type of a demo app::

    DRAINCTL_APP=demo DRAINCTL_PROCESS_TYPE=worker REDIS_URL=redis://localhost:6379 \
        python examples/fake_jobs.py

Env: the usual drainctl variables (see README), JOB_SECONDS (default 0.05) and
DRAINCTL_HEARTBEAT_INTERVAL. Prints ``ready <instance_id>`` once registered and ``alive N``
every ten jobs, which the demo and the tests read. With JOB_JOURNAL set, each job appends
``start N`` and ``done N`` to that file, so tests can check that no job ran twice.
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
    journal_path = os.environ.get("JOB_JOURNAL")
    journal = open(journal_path, "a", buffering=1) if journal_path else None  # noqa: SIM115
    done = 0
    while True:
        if not jobs.wait_until_accepting(timeout=0.5):
            continue
        job = jobs.start(f"fake-{done}")
        if job is None:
            continue
        with job:
            if journal:
                journal.write(f"start {done}\n")
            time.sleep(job_seconds)
            if journal:
                journal.write(f"done {done}\n")
        done += 1
        if done % 10 == 0:
            print("alive", done, flush=True)


if __name__ == "__main__":
    sys.exit(main())
