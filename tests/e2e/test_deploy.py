"""`drainctl deploy` end to end on the local platform: real processes, real Redis, real git."""

from __future__ import annotations

import os
import signal

from tests.e2e.heroku import LocalHeroku, wait_for

JOBS = [(f"job-{i}", 0.05 + (i % 5) * 0.3) for i in range(15)]


def test_happy_path_loses_and_doubles_nothing(heroku: LocalHeroku) -> None:
    """Exit 0; every job enqueued around the deploy runs exactly once; v2 alone; v1 kept fenced."""
    heroku.enqueue(*JOBS[:8])
    commit = heroku.commit("v2")
    done, summary = heroku.deploy()
    assert done.returncode == 0, done.stderr
    assert summary["ok"] and summary["commit"] == commit
    assert set(summary["phases_s"]) == {"plan", "drain", "push", "verify"}
    assert summary["drained"] == {"clock": 1, "worker": 1}
    assert heroku.release_of("worker") == {"v2"} and heroku.release_of("clock") == {"v2"}
    heroku.enqueue(*JOBS[8:])
    runs = wait_for(lambda: len(heroku.runs()) == len(JOBS) and heroku.runs(), what="all jobs")
    assert runs == {job_id: 1 for job_id, _ in JOBS}
    fences = heroku.fence_keys()
    assert [k.decode().rsplit(":", 1)[1] for k in fences] == ["v1"]
    assert heroku.redis.ttl(fences[0]) > 3600
