"""`drainctl deploy` refuses to start where it cannot push (exit 2), before touching anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from drainctl.config import Settings
from drainctl.deploy.lock import DeployLock, Holder, read_holder, server_now
from drainctl.listener import ControlListener
from tests.e2e.heroku import git_work_tree
from tests.processes import spawn_loop_worker, stop


def deploy(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drainctl", "--redis-url", settings.redis_url, "--app",
         settings.app or "", "deploy", *args],
        cwd=cwd, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_outside_a_git_work_tree_exits_2(settings: Settings, tmp_path: Path) -> None:
    """No git work tree: one clear line, exit 2."""
    done = deploy(settings, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("drainctl: not inside a git work tree")


def test_unknown_remote_exits_2(settings: Settings, tmp_path: Path) -> None:
    """A remote git does not know: exit 2 naming it; a push command skips the remote check."""
    git_work_tree(tmp_path)
    done = deploy(settings, tmp_path, "--remote", "nowhere")
    assert done.returncode == 2
    assert "unknown git remote 'nowhere'" in done.stderr
    pushed = deploy(settings, tmp_path, "--push-cmd", "exit 9", "--json", "--allow-empty")
    assert pushed.returncode == 4
    assert "'exit 9' exited with 9" in pushed.stderr


def test_nothing_to_drain_asks_for_allow_empty(settings: Settings, tmp_path: Path) -> None:
    """No live instance of the types to drain: exit 2 saying so, nothing pushed; with
    --allow-empty the push happens."""
    git_work_tree(tmp_path)
    done = deploy(settings, tmp_path, "-t", "worker", "--push-cmd", "touch pushed")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"drainctl: nothing to drain: no live worker instance of {settings.app}; "
        "pass --allow-empty to push anyway"
    )
    assert not (tmp_path / "pushed").exists()
    done = deploy(
        settings, tmp_path, "-t", "worker", "--push-cmd", "touch pushed", "--allow-empty",
        "--verify-timeout", "0",
    )  # fmt: skip
    assert (tmp_path / "pushed").exists()


def test_only_heartbeats_of_another_secret_say_so(settings: Settings, tmp_path: Path) -> None:
    """The deployer's secret is not the listeners': nothing to drain names the cause, exit 2,
    nothing pushed (not "pass --allow-empty", which would push past running workers)."""
    git_work_tree(tmp_path)
    listener = ControlListener(settings=settings.replace(process_type="worker"), secret="theirs")
    listener.start()
    try:
        done = deploy(settings, tmp_path, "--secret", "ours", "--push-cmd", "touch pushed")
    finally:
        listener.stop()
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"drainctl: nothing to drain: no live drainable instance of {settings.app}"
    )
    assert "1 matching entry ignored, not signed with this secret" in last
    assert not (tmp_path / "pushed").exists()


def test_a_held_lock_exits_7_after_wait_lock(settings: Settings, tmp_path: Path) -> None:
    """Another deploy holds the lock: exit 7 naming it, once --wait-lock has passed; nothing
    was drained or pushed, and the holder's lock is untouched."""
    git_work_tree(tmp_path)
    client = redis.Redis.from_url(settings.redis_url)
    app = settings.app or ""
    held = DeployLock(client, app, Holder("other1", "bob@ci", "f" * 40, server_now(client)))
    held.acquire()
    try:
        done = deploy(settings, tmp_path, "--push-cmd", "touch pushed", "--wait-lock", "1")
        assert done.returncode == 7, done.stderr
        assert "another deploy is in progress: deploy other1 by bob@ci of ffffffffffff" in (
            done.stderr
        )
        assert not (tmp_path / "pushed").exists()
        assert read_holder(client, app, None) == held.holder
    finally:
        held.release()
        client.close()


def test_a_worker_known_gone_is_not_waited_for(settings: Settings, tmp_path: Path) -> None:
    """A SIGKILLed worker whose entry lingers (pid gone on this host) is skipped, said so and
    counted as gone: the drain acknowledges without it and the push happens (with no waiting
    for it, the deploy would end with exit 3 and no push)."""
    git_work_tree(tmp_path)
    alive, _ = spawn_loop_worker(settings.redis_url, settings.app or "")
    killed, killed_id = spawn_loop_worker(
        settings.redis_url, settings.app or "", DRAINCTL_HEARTBEAT_INTERVAL="5"
    )
    stop(killed)
    try:
        done = deploy(
            settings, tmp_path, "-t", "worker", "--push-cmd", "touch pushed", "--ack-timeout",
            "60", "--verify-timeout", "1", "--json",
        )  # fmt: skip
    finally:
        stop(alive)
    assert "not waiting for 1 stale instance(s), gone: " in done.stderr
    assert f"({killed_id}): process " in done.stderr
    assert (tmp_path / "pushed").exists()
    summary = json.loads(done.stdout)
    assert (summary["drained"], summary["gone"]) == ({"worker": 1}, {"worker": 1})
