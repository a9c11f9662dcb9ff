"""E2E test app clock: fires a tick every 0.2 s unless drained, counting fires per instance."""

from __future__ import annotations

import os
import time

import redis

from drainctl import ControlListener, JobsAdapter
from drainctl.shutdown import drain_on_sigterm


def main() -> None:
    app = os.environ["HEROKU_APP_NAME"]
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    ticks = JobsAdapter()
    listener = ControlListener.from_env(adapter=ticks).start()
    drain_on_sigterm(listener, grace=float(os.environ.get("APP_GRACE", "3")), margin=0.5)
    while True:
        time.sleep(0.2)
        tick = ticks.start("tick")
        if tick is None:
            continue
        with tick:
            client.hincrby(f"e2e:{app}:fires", listener.identity.instance_id, 1)


if __name__ == "__main__":
    main()
