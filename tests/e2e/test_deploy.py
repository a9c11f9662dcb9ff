"""`drainctl deploy` end to end on the local platform: real processes, real Redis, real git."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys

from drainctl.keys import Keys
from tests.e2e.heroku import LocalHeroku
from tests.polling import wait_for

JOBS = [(f"job-{i}", 0.05 + (i % 5) * 0.3) for i in range(15)]


def test_happy_path_loses_and_doubles_nothing(heroku: LocalHeroku) -> None:
    """Exit 0; every job enqueued around the deploy runs exactly once; v2 alone; v1 kept fenced."""
    heroku.enqueue(*JOBS[:8])
    commit = heroku.commit("v2")
    done, summary = heroku.deploy()
    assert done.returncode == 0, done.stderr
    assert summary["ok"]
    assert summary["commit"] == commit
    assert set(summary["phases_s"]) == {"plan", "drain", "push", "verify"}
    assert summary["drained"] == {"clock": 1, "worker": 1}
    assert summary["verdict"] == "ok"
    undo = f"drainctl --app {heroku.app} unfence --release v1"
    assert f"v1 stays fenced for 24 h so its zombies never resume; `{undo}` lifts it" in done.stderr
    assert heroku.release_of("worker") == {"v2"}
    assert heroku.release_of("clock") == {"v2"}
    heroku.enqueue(*JOBS[8:])
    runs = wait_for(lambda: len(heroku.runs()) == len(JOBS) and heroku.runs(), what="all jobs")
    assert runs == {job_id: 1 for job_id, _ in JOBS}
    fences = heroku.fence_keys()
    assert [k.decode().rsplit(":", 1)[1] for k in fences] == ["v1"]
    assert heroku.redis.ttl(fences[0]) > 3600


def assert_resumed_on_v1(heroku: LocalHeroku) -> None:
    """Nothing was released, no fence is left, and every instance runs again."""
    assert heroku.layout.launched() == 1
    assert heroku.fence_keys() == []
    heroku.wait_for_release("v1")


def test_frozen_worker_is_known_gone_and_not_waited_for(heroku: LocalHeroku) -> None:
    """A frozen worker (SIGSTOP) stops beating: once its beat is older than two intervals the
    deploy knows it gone (stale, or expired and no longer listed) and does not wait out
    --ack-timeout for it: nothing "did not answer", the push happens. (A live instance that
    never answers still blocks the push: tests/e2e/test_faults.py.)"""
    heroku.commit("v2")
    (worker,) = heroku.live("worker")
    os.kill(worker.doc["pid"], signal.SIGSTOP)
    try:
        wait_for(lambda: all(r.stale for r in heroku.live("worker")), 10, "a stale beat")
        done, summary = heroku.deploy()
    finally:
        with contextlib.suppress(ProcessLookupError):  # the platform killed it at the push
            os.kill(worker.doc["pid"], signal.SIGCONT)
    assert "did not answer" not in done.stderr
    assert "push" in summary["phases_s"], done.stderr
    assert summary["drained"].get("worker") is None
    if "not waiting for 1 stale instance(s)" in done.stderr:
        assert summary["gone"] == {"worker": 1}
        assert worker.instance_id in done.stderr


def test_rejected_push_resumes_the_app(heroku: LocalHeroku) -> None:
    """The remote refuses the push: exit 4 with git's output shown, fence lifted, app resumed."""
    heroku.commit("v2")
    heroku.fault("--reject")
    done, summary = heroku.deploy()
    assert done.returncode == 4, done.stderr
    assert "rejected by the platform" in done.stderr
    assert summary["drained"] == {"clock": 1, "worker": 1}
    assert_resumed_on_v1(heroku)


def test_zombie_is_named_and_stays_fenced(heroku: LocalHeroku) -> None:
    """Old processes left alive: exit 5 naming them; they neither fire nor take jobs after, also
    once the fence's first expiry (``--fence-ttl 3``) has passed: the deploy kept it."""
    heroku.commit("v2")
    heroku.fault("--zombie", "clock", "--zombie", "worker")
    done, summary = heroku.deploy("--fence-ttl", "3")
    assert done.returncode == 5, done.stderr
    zombies = {z["process_type"]: z for z in summary["verify"]["zombies"]}
    assert set(zombies) == {"clock", "worker"}
    for zombie in zombies.values():
        assert zombie["release"] == "v1"
        assert zombie["pid"]
        assert zombie["host"]
        assert f"zombie {zombie['dyno']} ({zombie['instance_id']})" in done.stderr
    old_clock = zombies["clock"]["instance_id"]
    fired = heroku.fires(old_clock)
    (new_clock,) = [r for r in heroku.live("clock") if r.doc["release"] == "v2"]
    start = heroku.fires(new_clock.instance_id)
    heroku.enqueue(*JOBS)
    wait_for(lambda: len(heroku.runs()) == len(JOBS), what="all jobs")
    wait_for(lambda: heroku.fires(new_clock.instance_id) >= start + 5, what="new clock fires")
    assert heroku.fires(old_clock) == fired
    ran_by = {v.decode() for v in heroku.redis.hvals(heroku.key("ran_by"))}
    assert zombies["worker"]["instance_id"] not in ran_by
    resume = heroku.drainctl("resume", "--instance", old_clock)
    assert resume.returncode == 3
    assert "fenced" in resume.stdout + resume.stderr
    old_worker = zombies["worker"]["instance_id"]
    states = {r.instance_id: r.doc["state"] for r in heroku.live()}
    assert states[old_worker] == "drained"
    assert states[old_clock] in ("drained", "fenced")


def test_crash_looping_type_fails_with_its_last_error(heroku: LocalHeroku) -> None:
    """The new worker crashes at boot over and over: exit 5 with the crash loop and its error."""
    heroku.commit("v2")
    heroku.fault("--crash", "worker")
    done, summary = heroku.deploy()
    assert done.returncode == 5, done.stderr
    (loop,) = summary["verify"]["crash_loops"]
    assert loop["process_type"] == "worker"
    assert loop["restarts"] > 2
    assert "crashed at boot (injected fault)" in loop["last_error"]
    assert "worker is crash-looping" in done.stderr


def test_ctrl_c_during_the_drain_resumes_and_lifts_the_fence(heroku: LocalHeroku) -> None:
    """SIGINT while a worker drains a long job: exit 130, fence lifted, app resumed, no push."""
    heroku.enqueue(("long", 4.0))
    wait_for(lambda: heroku.live("worker")[0].doc.get("in_flight") == 1, what="job in flight")
    heroku.commit("v2")
    deploy = subprocess.Popen(
        [sys.executable, "-m", "drainctl", "--app", heroku.app, "deploy", "--remote", "heroku",
         "--drain-deadline", "10"],
        cwd=heroku.src, env=heroku.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: heroku.live("worker")[0].doc.get("state") == "draining", what="draining")
    deploy.send_signal(signal.SIGINT)
    out, err = deploy.communicate(timeout=30)
    assert deploy.returncode == 130, out + err
    assert "the fence was lifted and the app resumed" in err
    assert_resumed_on_v1(heroku)
    wait_for(lambda: heroku.runs() == {"long": 1}, what="the long job to finish once")


def test_verify_alone_after_a_plain_push(heroku: LocalHeroku) -> None:
    """`drainctl verify` after a push done another way: 0 for the release that came up, 5 for one
    that never does."""
    commit = heroku.commit("v2")
    heroku.git("push", "--quiet", "heroku", "HEAD:main")
    ok = heroku.drainctl("verify", "--commit", commit[:7], "--stable-for", "1", "--json")
    assert ok.returncode == 0, ok.stderr
    missing = heroku.drainctl("verify", "--release", "v9", "--verify-timeout", "1")
    assert missing.returncode == 5
    assert "clock: 0/1 stable on the new release" in missing.stderr


MID_PUSH = """
import json, sys, time
import redis
url, fence_key, instance_key, probe_key = sys.argv[1:]
client = redis.Redis.from_url(url)
client.delete(fence_key)
time.sleep(1.0)  # a few heartbeats, and a re-registration
client.delete(instance_key)
time.sleep(1.0)
client.set(probe_key, json.loads(client.get(instance_key))["state"], ex=60)
"""


def test_fence_deleted_mid_push_is_reported_and_written_again(heroku: LocalHeroku) -> None:
    """Someone (or eviction) deletes the fence while the deploy pushes: the drained old worker
    does not resume meanwhile, and the deploy says so and writes the fence again."""
    heroku.commit("v2")
    (old_worker,) = heroku.live("worker")
    keys = Keys(heroku.app)
    script = heroku.root / "mid_push.py"
    script.write_text(MID_PUSH)
    mid_push = shlex.join(
        [
            sys.executable, str(script), heroku.redis_url, keys.fence("v1"),
            keys.instance(old_worker.instance_id), heroku.key("probe"),
        ]
    )  # fmt: skip
    done, _ = heroku.deploy("--push-cmd", f"{mid_push} && git push heroku HEAD:main")
    assert done.returncode == 0, done.stderr
    assert heroku.redis.get(heroku.key("probe")) == b"drained"
    assert "the fence on v1 vanished during the deploy" in done.stderr
    assert [k.decode().rsplit(":", 1)[1] for k in heroku.fence_keys()] == ["v1"]
    heroku.redis.delete(heroku.key("probe"))
