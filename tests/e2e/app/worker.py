"""E2E test app worker: a reliable-queue loop under the generic JobsAdapter, writing a ledger.

Each job is JSON ``{"id", "seconds"}`` popped from ``e2e:{app}:queue`` into this instance's
processing list (so a drain hands it back at once); each run adds one to the job's count in
``e2e:{app}:runs`` and notes the instance in ``e2e:{app}:ran_by``.
"""

from __future__ import annotations

import json
import os
import time

import redis

from drainctl import ControlListener, JobsAdapter
from drainctl.shutdown import drain_on_sigterm


def main() -> None:
    app = os.environ["HEROKU_APP_NAME"]
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    jobs = JobsAdapter()
    listener = ControlListener.from_env(adapter=jobs).start()
    me = listener.identity.instance_id
    queue, processing = f"e2e:{app}:queue", f"e2e:{app}:processing:{me}"
    drain_on_sigterm(listener, grace=float(os.environ.get("APP_GRACE", "3")), margin=0.5)
    while True:
        if not jobs.wait_until_accepting(timeout=0.5):
            continue
        raw = client.blmove(queue, processing, 0.2, "RIGHT", "LEFT")
        if raw is None:
            continue
        job = jobs.start(json.loads(raw)["id"])
        if job is None:  # a drain began while we were popping: hand it back first in line
            client.lmove(processing, queue, "LEFT", "RIGHT")
            continue
        with job:
            spec = json.loads(raw)
            time.sleep(spec["seconds"])
            pipe = client.pipeline()
            pipe.hincrby(f"e2e:{app}:runs", spec["id"], 1)
            pipe.hset(f"e2e:{app}:ran_by", spec["id"], me)
            pipe.lrem(processing, 1, raw)
            pipe.execute()


if __name__ == "__main__":
    main()
