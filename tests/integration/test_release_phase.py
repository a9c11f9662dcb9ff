"""`drainctl release-phase` and the new release's own verdict, on a real redis-server.

The release phase runs as the CLI in a subprocess (as the platform runs it); the listeners of
the old and new releases run in this process, except the frozen one (SIGSTOP needs a process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from drainctl.config import Settings
from drainctl.deploy import awaiting, confirm, history
from drainctl.keys import Keys
from drainctl.listener import ControlListener
from drainctl.protocol import State
from drainctl.signing import Signer
from tests.host_app import HostProcess
from tests.integration.conftest import StartListener
from tests.polling import wait_for

PROCFILE = "clock: python clock.py\nworker: python worker.py\nrelease: drainctl release-phase\n"
SHA = "ab12" * 10
FAST = ["--drain-deadline", "2", "--ack-timeout", "3", "--stable-for", "0.5"]


def release_phase(
    settings: Settings, cwd: Path, *args: str, release: str = "v2", **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``drainctl release-phase --json`` as the release dyno of ``release`` runs it."""
    (cwd / "Procfile").write_text(PROCFILE)
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DRAINCTL_", "HEROKU_"))},
        "REDIS_URL": settings.redis_url,
        "HEROKU_APP_NAME": settings.app or "",
        "DYNO": "release.1234",
        "HEROKU_SLUG_COMMIT": SHA,
        **({"HEROKU_RELEASE_VERSION": release} if release else {}),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "drainctl", "release-phase", "--json", *FAST, *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    return done, json.loads(lines[-1]) if lines else {}


def records(client: redis.Redis, app: str) -> list[dict[str, Any]]:
    """The app's deploy history, oldest first."""
    return list(reversed(history.recent(client, app, 20, None)))


def test_drains_older_releases_then_the_new_release_confirms_itself(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """v1 is fenced and drained, v3 (newer) is left alone; exit 0 with verdict awaiting. The
    first v2 instance claims the deploy, records up and ok, and keeps v1 fenced for a day."""
    app = settings.app or ""
    old = [start_listener(kind, release="v1") for kind in ("clock", "worker")]
    newer = start_listener("worker", release="v3")
    done, summary = release_phase(settings, tmp_path)
    assert done.returncode == 0, done.stderr
    assert summary["verdict"] == "awaiting"
    assert summary["drained"] == {"clock": 1, "worker": 1}
    assert [listener.state for listener in old] == [State.DRAINED, State.DRAINED]
    assert newer.state is State.RUNNING
    fence_key = Keys(app).fence("v1")
    assert 0 < redis_client.pttl(fence_key) <= 900_000
    assert redis_client.exists(Keys(app).deploy_awaiting("v2"))
    (phase,) = records(redis_client, app)
    assert (phase["source"], phase["verdict"], phase["from"], phase["to"]) == (
        "release-phase", "awaiting", ["v1"], ["v2"],
    )  # fmt: skip
    newer.stop()
    for listener in old:  # the platform stops the old release
        listener.stop()
    new = [start_listener(kind, release="v2") for kind in ("clock", "worker", "worker")]
    verdicts = wait_for(
        lambda: [r for r in records(redis_client, app) if r["verdict"] == "ok"], 20, "the verdict"
    )
    mine = [r for r in records(redis_client, app) if r["source"] == "app"]
    assert [r["verdict"] for r in mine] == ["up", "ok"]  # one instance claimed it
    assert verdicts[0]["id"] == phase["id"]
    assert verdicts[0]["verify"]["required"] == {"clock": 1, "worker": 1}
    assert verdicts[0]["who"] in {
        f"{n.identity.process_type} ({n.identity.instance_id})" for n in new
    }
    assert redis_client.pttl(fence_key) > 3600_000
    assert not redis_client.exists(Keys(app).deploy_awaiting("v2"))
    assert not redis_client.exists(Keys(app).deploy_confirm(phase["id"]))
    shown = subprocess.run(
        [sys.executable, "-m", "drainctl", "--redis-url", settings.redis_url, "--app", app,
         "verify", "--release", "v2"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"release v2 was confirmed by {verdicts[0]['who']}" in shown.stdout
    redis_client.delete(fence_key)


def test_an_instance_that_never_answers_fails_the_release_and_resumes_everyone(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A frozen v1 worker: exit 3 with one line naming what happened, no fence or awaiting
    record left, the other v1 instance running again, the deploy recorded as failed."""
    app = settings.app or ""
    clock = start_listener("clock", release="v1")
    frozen = HostProcess(settings.redis_url, app, tmp_path / "journal")
    os.kill(frozen.process.pid, signal.SIGSTOP)
    try:
        done, summary = release_phase(settings, tmp_path, "--ack-timeout", "1.5")
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)
        frozen.stop()
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "drainctl: drain: 0 failed, 1 did not answer; v2 is not deployed and the app was resumed"
    )
    assert summary["verdict"] == "failed"
    assert clock.state is State.RUNNING
    assert redis_client.keys(f"drainctl:{app}:fence:*") == []
    assert not redis_client.exists(Keys(app).deploy_awaiting("v2"))
    assert not redis_client.exists(Keys(app).deploy_lock)
    (record,) = records(redis_client, app)
    assert (record["source"], record["verdict"], record["exit_code"]) == (
        "release-phase",
        "failed",
        3,
    )


def test_without_a_release_to_deploy_it_exits_2(settings: Settings, tmp_path: Path) -> None:
    """No DRAINCTL_RELEASE, HEROKU_RELEASE_VERSION or HEROKU_SLUG_COMMIT: one line, exit 2."""
    done, _ = release_phase(settings, tmp_path, release="", HEROKU_SLUG_COMMIT="")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("drainctl: no release to deploy")


def test_a_deploy_of_the_same_commit_drives_it_so_the_release_phase_stands_aside(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """`drainctl deploy` pushed this commit and holds the lock: exit 0, nothing drained twice."""
    from drainctl.deploy.lock import DeployLock, Holder, server_now

    app = settings.app or ""
    worker = start_listener("worker", release="v1")
    lock = DeployLock(
        redis_client, app, Holder("laptop", "ann@laptop", SHA, server_now(redis_client))
    )
    lock.acquire()
    try:
        done, summary = release_phase(settings, tmp_path)
    finally:
        lock.release()
    assert done.returncode == 0, done.stderr
    assert "deploy laptop by ann@laptop" in done.stderr
    assert summary["verdict"] == "noop"
    assert worker.state is State.RUNNING
    assert records(redis_client, app) == []


def test_a_forged_awaiting_record_is_ignored(settings: Settings, redis_client: redis.Redis) -> None:
    """With a secret, an unsigned record (anyone with Redis access) starts no confirmation."""
    app = settings.app or ""
    signed = settings.replace(secrets=("s3cret",))
    forged = awaiting.Awaiting("forged", "v2", SHA, ("v1",), ("worker",), {"worker": 1}, ())
    awaiting.publish(redis_client, app, forged, None, 30)
    try:
        assert awaiting.read(redis_client, app, "v2", Signer.from_settings(signed)) is None
        listener = ControlListener(settings=signed.replace(process_type="worker", release="v2"))
        assert confirm.confirm(listener.redis, listener.settings, listener.identity) is None
        listener.redis.close()
        assert not redis_client.exists(Keys(app).deploy_confirm("forged"))
    finally:
        redis_client.delete(Keys(app).deploy_awaiting("v2"))
