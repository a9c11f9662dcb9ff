"""The pre-push hook end to end: real git pushes to the local platform."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from drainctl.deploy.githook import CHAINED
from tests.e2e.heroku import LocalHeroku
from tests.polling import wait_for

RECORDING_HOOK = """#!/bin/sh
echo "args: $*" > "{out}"
cat >> "{out}"
exit {code}
"""


def push(heroku: LocalHeroku) -> subprocess.CompletedProcess[str]:
    """``git push heroku HEAD:main`` in the app's work tree (hooks run)."""
    return subprocess.run(
        ["git", "push", "heroku", "HEAD:main"],
        cwd=heroku.src,
        env=heroku.env | {"DRAINCTL_APP": heroku.app},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def install(heroku: LocalHeroku) -> str:
    """``drainctl hook install`` with short timings; its output."""
    done = heroku.drainctl(
        "hook", "install", "--remote", "heroku", "--drain-deadline", "2", "--ack-timeout", "3"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_hook_blocks_the_push_when_the_drain_fails(heroku: LocalHeroku) -> None:
    """A worker that never acknowledges: the push is blocked, nothing released, app resumed."""
    install(heroku)
    before = heroku.git("ls-remote", "heroku", "refs/heads/main").split()[0]
    heroku.commit("v2")
    (worker,) = heroku.live("worker")
    os.kill(worker.doc["pid"], signal.SIGSTOP)
    try:
        done = push(heroku)
    finally:
        os.kill(worker.doc["pid"], signal.SIGCONT)
    assert done.returncode != 0
    assert "drainctl: push blocked: drain: 0 failed, 1 did not answer" in done.stderr
    assert heroku.git("ls-remote", "heroku", "refs/heads/main").split()[0] == before
    assert heroku.layout.launched() == 1
    assert heroku.fence_keys() == []
    heroku.wait_for_release("v1")


def test_hook_chains_an_existing_hook_and_verifies_in_the_background(
    heroku: LocalHeroku,
) -> None:
    """The old hook runs first with git's args and stdin; the push drains, deploys, verifies;
    uninstall restores the old hook."""
    hooks = heroku.src / ".git" / "hooks"
    record = heroku.root / "chained.txt"
    (hooks / "pre-push").write_text(RECORDING_HOOK.format(out=record, code=0))
    (hooks / "pre-push").chmod(0o755)
    assert "kept as pre-push.drainctl-chained" in install(heroku)
    assert "kept" not in install(heroku)  # idempotent
    commit = heroku.commit("v2")
    done = push(heroku)
    assert done.returncode == 0, done.stderr
    lines = record.read_text().splitlines()
    assert lines[0].startswith("args: heroku ")
    assert lines[1].split()[1] == commit
    assert lines[1].split()[2] == "refs/heads/main"
    assert "drained" in done.stderr
    assert "drainctl-verify.log" in done.stderr
    heroku.wait_for_release("v2")
    log = heroku.src / ".git" / "drainctl-verify.log"
    wait_for(lambda: "new release up, stable and alone" in log.read_text(), 30, "verify log")
    # The history record, appended by the background verify, has what the hook saw too.
    (entry,) = wait_for(lambda: json.loads(heroku.drainctl("history", "--json").stdout), 10)
    assert (entry["source"], entry["verdict"], entry["from"], entry["to"]) == (
        "hook", "ok", ["v1"], ["v2"],
    )  # fmt: skip
    assert set(entry["phases_s"]) >= {"plan", "drain", "verify"}
    assert entry["phases_s"]["verify"] > 0
    assert heroku.drainctl("hook", "uninstall").returncode == 0
    assert "exit 0" in (hooks / "pre-push").read_text()
    assert not (hooks / CHAINED).exists()


def test_failing_chained_hook_blocks_the_push_before_any_drain(heroku: LocalHeroku) -> None:
    """When the hook it chains fails, the push is refused and nothing is drained."""
    hooks = heroku.src / ".git" / "hooks"
    (hooks / "pre-push").write_text(RECORDING_HOOK.format(out=heroku.root / "x", code=7))
    (hooks / "pre-push").chmod(0o755)
    install(heroku)
    heroku.commit("v2")
    done = push(heroku)
    assert done.returncode != 0
    assert heroku.layout.launched() == 1
    assert all(r.doc["state"] == "running" for r in heroku.live())


def test_push_that_fails_after_the_hook_drained_resumes_the_app(heroku: LocalHeroku) -> None:
    """Git pushes after the hook: when the remote then rejects it, the background verify sees no
    new release, lifts the fence and resumes the old one instead of leaving it drained."""
    done = heroku.drainctl("hook", "install", "--remote", "heroku", "--verify-timeout", "2")
    assert done.returncode == 0, done.stderr
    heroku.commit("v2")
    heroku.fault("--reject")
    pushed = push(heroku)
    assert pushed.returncode != 0
    assert "drained" in pushed.stderr
    assert heroku.layout.launched() == 1
    wait_for(lambda: heroku.fence_keys() == [], 30, "the fence to be lifted")
    heroku.wait_for_release("v1")
    log = heroku.src / ".git" / "drainctl-verify.log"
    wait_for(lambda: "nothing was deployed" in log.read_text(), 30, "the verify to say so")
    assert "lifting the fence on v1; resuming" in log.read_text()
    assert "lifted the fence on v1 and resumed it" in log.read_text()
    (record,) = json.loads(heroku.drainctl("history", "--json").stdout)
    assert (record["source"], record["verdict"], record["exit_code"]) == ("hook", "noop", 0)


def test_a_later_deploy_stops_the_background_verify(heroku: LocalHeroku) -> None:
    """The hook records the counts before git pushes; its verify holds the deploy lock until a
    newer deploy takes it over, then stops and says so (it never calls the newer deploy's
    instances zombies)."""
    done = heroku.drainctl("hook", "install", "--remote", "heroku", "--stable-for", "60")
    assert done.returncode == 0, done.stderr
    heroku.commit("v2")
    assert push(heroku).returncode == 0
    log = heroku.src / ".git" / "drainctl-verify.log"
    wait_for(lambda: "need 1 clock, 1 worker" in log.read_text(), 30, "the verify to start")
    heroku.wait_for_release("v2")
    heroku.commit("v3")
    deployed, _ = heroku.deploy()
    assert deployed.returncode == 0, deployed.stderr
    assert "took the deploy lock over from a background verify" in deployed.stderr
    stopped = "stopped watching: a newer deploy took the deploy lock"
    wait_for(lambda: stopped in log.read_text(), 30, "the old verify to stop")
    assert "zombie" not in log.read_text()
    records = json.loads(heroku.drainctl("history", "--json").stdout)
    assert sorted((r["source"], r["verdict"]) for r in records) == [
        ("deploy", "ok"),
        ("hook", "superseded"),
    ]
