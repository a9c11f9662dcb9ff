"""`release: drainctl release-phase` on the local platform: a plain `git push` drains, the
platform switches releases only after it succeeds, and the new release records its own verdict."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_no_lasting_keys
from tests.e2e.heroku import LocalHeroku
from tests.polling import wait_for
from tests.redis_server import RedisServer

JOBS = [(f"job-{i}", 0.05 + (i % 5) * 0.3) for i in range(15)]
RELEASE = (
    "drainctl release-phase --drain-deadline 3 --ack-timeout 4 --stable-for 1 --zombie-grace 4 "
    "--verify-timeout 25"
)


def with_release_phase(heroku: LocalHeroku, command: str = RELEASE) -> str:
    """Commit v2 with a ``release:`` entry in the Procfile; its sha."""
    procfile = heroku.src / "Procfile"
    procfile.write_text(procfile.read_text() + f"release: {command}\n")
    return heroku.commit("v2")


def push(heroku: LocalHeroku) -> str:
    """A plain ``git push heroku HEAD:main``: what the platform printed."""
    done = heroku.git_result("push", "heroku", "HEAD:main")
    assert done.returncode == 0, done.stderr  # the ref is updated whatever the release phase says
    return done.stderr


def history(heroku: LocalHeroku) -> list[dict[str, Any]]:
    """``drainctl history --json``, oldest first."""
    done = heroku.drainctl("history", "--json", "-n", "20")
    assert done.returncode == 0, done.stderr
    return list(reversed(json.loads(done.stdout)))


def verdicts(heroku: LocalHeroku) -> list[str]:
    """The verdicts recorded for the deploy, in order: the release phase's, then the app's."""
    return [f"{r['source']}:{r['verdict']}" for r in history(heroku)]


def test_plain_push_keeps_every_job_and_run(heroku: LocalHeroku) -> None:
    """The release phase drains v1 before v2 starts: every job runs exactly once, the old clock
    fires no more once v2 runs, v2 records up and ok, and v1 stays fenced for a day."""
    heroku.enqueue(*JOBS[:8])
    (old_clock,) = heroku.live("clock")
    commit = with_release_phase(heroku)
    out = push(heroku)
    assert "Running release command for v2" in out
    assert "drained 1 clock, 1 worker" in out
    fired = heroku.fires(old_clock.instance_id)
    heroku.wait_for_release("v2")
    (new_clock,) = heroku.live("clock")
    heroku.enqueue(*JOBS[8:])
    runs = wait_for(lambda: len(heroku.runs()) == len(JOBS) and heroku.runs(), what="all jobs")
    assert runs == {job_id: 1 for job_id, _ in JOBS}
    wait_for(lambda: heroku.fires(new_clock.instance_id) >= 5, what="the new clock to fire")
    assert heroku.fires(old_clock.instance_id) == fired
    wait_for(lambda: "app:ok" in verdicts(heroku), 30, "the new release's verdict")
    assert verdicts(heroku) == ["release-phase:awaiting", "app:up", "app:ok"]
    phase, _, ok = history(heroku)
    assert (phase["from"], phase["to"], phase["commit"]) == (["v1"], ["v2"], commit)
    assert ok["id"] == phase["id"]
    assert ok["verify"]["stable"] == {"clock": 1, "worker": 1}
    # How long each part took: the release phase's plan and drain, the new release's verify.
    assert set(phase["phases_s"]) >= {"plan", "drain"}
    assert ok["phases_s"]["verify"] > 0
    (fence,) = heroku.fence_keys()
    assert fence.decode().endswith(":v1")
    assert heroku.redis.ttl(fence) > 3600
    shown = heroku.drainctl("verify", "--release", "v2")
    assert shown.returncode == 0, shown.stderr
    assert "confirmed by" in shown.stdout


@pytest.fixture
def slow_beat(tmp_path: Path, redis_server: RedisServer, app: str) -> Iterator[LocalHeroku]:
    """v1 with 3 s heartbeats: a frozen instance stays listed (9 s) while the push starts."""
    platform = LocalHeroku(tmp_path, redis_server.url, app)
    try:
        yield platform.start(env={"DRAINCTL_HEARTBEAT_INTERVAL": "3"})
    finally:
        platform.stop()
    assert_no_lasting_keys(redis_server.url, app)


def test_a_drain_that_fails_keeps_the_old_release_running(slow_beat: LocalHeroku) -> None:
    """A frozen worker never answers: the release phase exits 3 with its reason in the push
    output, the platform keeps v1, no fence is left and v1 takes work again."""
    heroku = slow_beat
    with_release_phase(heroku)
    (worker,) = heroku.live("worker")
    os.kill(worker.doc["pid"], signal.SIGSTOP)
    try:
        out = push(heroku)
    finally:
        os.kill(worker.doc["pid"], signal.SIGCONT)
    assert "1 did not answer; v2 is not deployed and the app was resumed" in out
    assert "release phase failed (exit 3): v2 not deployed" in out
    assert heroku.layout.launched() == 1
    assert heroku.fence_keys() == []
    heroku.wait_for_release("v1")
    heroku.enqueue(*JOBS[:5])
    runs = wait_for(lambda: len(heroku.runs()) == 5 and heroku.runs(), what="jobs on v1")
    assert runs == {job_id: 1 for job_id, _ in JOBS[:5]}
    assert verdicts(heroku) == ["release-phase:failed"]


def test_a_release_that_never_starts_resumes_the_old_one_after_the_fence_ttl(
    heroku: LocalHeroku,
) -> None:
    """The release phase drained v1 and succeeded, then the platform failed the release (here
    the release command exits 1 after drainctl): v1 stays drained, then resumes by itself once
    the fence's --fence-ttl passes; nobody confirms, and the record says awaiting."""
    # A TTL well beyond the push, however slow the machine: the drained state is checked after it.
    with_release_phase(heroku, f"{RELEASE} --fence-ttl 25 && exit 1")
    out = push(heroku)
    assert "release phase failed (exit 1)" in out
    assert heroku.layout.launched() == 1
    # The registry shows an acknowledged state within STATE_BEAT_DELAY; a v1 that had resumed
    # would never show drained here (the fence lasts 25 s).
    wait_for(
        lambda: (
            {r.process_type: r.doc["state"] for r in heroku.live()}
            == {"clock": "drained", "worker": "drained"}
        ),
        2,
        "v1 drained in the registry",
    )
    heroku.enqueue(*JOBS[:5])
    heroku.wait_for_release("v1", timeout=60)  # every v1 instance running again
    runs = wait_for(lambda: len(heroku.runs()) == 5 and heroku.runs(), what="jobs on v1")
    assert runs == {job_id: 1 for job_id, _ in JOBS[:5]}
    assert verdicts(heroku) == ["release-phase:awaiting"]


def test_a_crash_looping_new_release_records_its_failure(heroku: LocalHeroku) -> None:
    """The new worker crashes at boot (the platform's --crash fault): the new clock confirms the
    deploy, and the history (and `drainctl verify --release v2`) show the crash loop."""
    with_release_phase(heroku)
    heroku.fault("--crash", "worker")
    push(heroku)
    wait_for(lambda: "app:failed" in verdicts(heroku), 40, "the new release's verdict")
    failed = history(heroku)[-1]
    assert failed["exit_code"] == 5
    assert "worker is crash-looping" in failed["error"]
    assert "crashed at boot (injected fault)" in failed["error"]
    shown = heroku.drainctl("verify", "--release", "v2")
    assert shown.returncode == 5
    assert "worker is crash-looping" in shown.stderr
