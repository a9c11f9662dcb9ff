"""Heartbeat documents written by someone without the secret, against the real CLI and listeners.

With a secret set, such a document is shown as unverified and never counted: it cannot make a
crashed deploy pass. Without a secret, the documented behaviour is pinned: heartbeats are
trusted as they are.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from drainctl.config import Settings
from tests.e2e.heroku import git_work_tree
from tests.integration.conftest import StartListener
from tests.processes import ROOT, spawn_loop_worker, stop

SECRET = "forgery-test-secret"
FORGED_ID = "f0rged0000001"


def forge(url: str, app: str, commit: str) -> None:
    """What an attacker with write access (and no secret) does: one heartbeat of the new commit.

    Its interval is huge and its key lives long, so it never looks stale.
    """
    doc = {
        "instance_id": FORGED_ID,
        "process_type": "worker",
        "dyno": "worker.1",
        "release": "v2",
        "commit": commit,
        "state": "running",
        "heartbeat_interval": 1000,
    }
    client = redis.Redis.from_url(url)
    try:
        client.set(f"drainctl:{app}:instance:{FORGED_ID}", json.dumps(doc), px=3_000_000)
        client.zadd(f"drainctl:{app}:instances", {FORGED_ID: 0})
        client.expire(f"drainctl:{app}:instances", 60)  # the suite checks every key expires
    finally:
        client.close()


def cli(
    settings: Settings, *args: str, secret: bool, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real ``drainctl`` in a subprocess, with or without the secret in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAINCTL_")}
    env |= {"DRAINCTL_SECRET": SECRET} if secret else {}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "drainctl", "--redis-url", settings.redis_url,
         "--app", str(settings.app), *args],
        capture_output=True, text=True, check=False, timeout=60, env=env, cwd=cwd,
    )  # fmt: skip


@pytest.fixture
def cleanup_forged(settings: Settings) -> Any:
    yield
    client = redis.Redis.from_url(settings.redis_url)
    client.delete(f"drainctl:{settings.app}:instance:{FORGED_ID}")
    client.close()


@pytest.mark.usefixtures("cleanup_forged")
def test_status_and_ping_mark_a_forged_entry_unverified(
    settings: Settings, start_listener: StartListener
) -> None:
    """status shows the forged entry as UNVERIFIED (and --json says why); ping does not wait for
    it, and the real listener answers."""
    real = start_listener("worker", secrets=(SECRET,), dyno="worker.2")
    forge(settings.redis_url, str(settings.app), "c0ffee")
    table = cli(settings, "status", secret=True)
    assert table.returncode == 0, table.stderr
    forged_row = next(line for line in table.stdout.splitlines() if FORGED_ID in line)
    assert "UNVERIFIED" in forged_row
    assert "unsigned" in forged_row
    real_row = next(line for line in table.stdout.splitlines() if "worker.2" in line)
    assert "running" in real_row
    assert real_row.rstrip().endswith("ok")
    rows = {
        r["instance_id"]: r
        for r in json.loads(cli(settings, "--json", "status", secret=True).stdout)
    }
    assert rows[FORGED_ID]["verified"] is False
    assert rows[FORGED_ID]["unverified"] == "unsigned"
    assert rows[real.identity.instance_id]["verified"] is True
    ping = cli(settings, "--json", "ping", "--timeout", "30", secret=True)
    assert ping.returncode == 0, ping.stderr
    outcome = json.loads(ping.stdout)
    assert [r["instance"]["instance_id"] for r in outcome["replies"]] == [real.identity.instance_id]
    assert outcome["missing"] == []
    assert [u["instance_id"] for u in outcome["unverified"]] == [FORGED_ID]


@pytest.mark.usefixtures("cleanup_forged")
def test_without_a_secret_a_forged_entry_counts_as_documented(settings: Settings) -> None:
    """No secret: heartbeats are not authenticated, so status lists the entry like any other and
    ping waits for it (and reports it missing): today's documented behaviour."""
    forge(settings.redis_url, str(settings.app), "c0ffee")
    rows = json.loads(cli(settings, "--json", "status", secret=False).stdout)
    assert [(r["instance_id"], r["verified"]) for r in rows] == [(FORGED_ID, None)]
    ping = cli(settings, "--json", "ping", "--timeout", "0.5", secret=False)
    assert ping.returncode == 3
    assert [m["instance_id"] for m in json.loads(ping.stdout)["missing"]] == [FORGED_ID]


@pytest.mark.usefixtures("cleanup_forged")
@pytest.mark.parametrize(("secret", "code"), [(True, 5), (False, 0)])
def test_forged_heartbeat_vs_verify(
    settings: Settings, start_listener: StartListener, secret: bool, code: int
) -> None:
    """The old worker is gone and nothing new started; a forged heartbeat claims the new commit.
    With a secret, `verify --commit NEW` fails (exit 5); without one it passes, as documented."""
    old = start_listener("worker", secrets=(SECRET,) if secret else (), commit="0ld0ld")
    old.stop()
    forge(settings.redis_url, str(settings.app), "abc123def")
    done = cli(
        settings, "verify", "--commit", "abc123def", "-t", "worker", "--stable-for", "0.5",
        "--verify-timeout", "3", secret=secret,
    )  # fmt: skip
    assert done.returncode == code, done.stdout + done.stderr
    if secret:
        assert "worker: 0/1 stable on the new release" in done.stderr
        assert f"ignoring worker.1 ({FORGED_ID})" in done.stderr
    else:
        assert "new release up, stable and alone" in done.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("cleanup_forged")
@pytest.mark.parametrize(("secret", "code"), [(True, 5), (False, 0)])
def test_forged_heartbeat_vs_deploy(
    settings: Settings, tmp_path: Path, secret: bool, code: int
) -> None:
    """The push kills the old worker (a real process) and writes a forged heartbeat of the new
    commit: with a secret `drainctl deploy` fails verification (exit 5), without it exits 0."""
    env = {"DRAINCTL_SECRET": SECRET} if secret else {}
    proc, _ = spawn_loop_worker(
        settings.redis_url, str(settings.app), HEROKU_RELEASE_VERSION="v1", **env
    )
    try:
        repo = git_work_tree(tmp_path / "repo")
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        forger = (
            "from tests.integration.test_forged_heartbeats import forge; "
            f"forge({settings.redis_url!r}, {settings.app!r}, {commit!r})"
        )
        push = f"kill -9 {proc.pid} && {shlex.quote(sys.executable)} -c {shlex.quote(forger)}"
        done = cli(
            settings, "deploy", "-t", "worker", "--push-cmd", push, "--stable-for", "0.5",
            "--verify-timeout", "3", "--drain-deadline", "2", secret=secret, cwd=repo,
        )  # fmt: skip
    finally:
        stop(proc)
    assert done.returncode == code, done.stdout + done.stderr
    assert ("worker: 0/1 stable" in done.stderr) is secret
