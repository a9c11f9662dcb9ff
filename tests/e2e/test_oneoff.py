"""``drainctl run -- CMD``: a one-off process registered as an instance, as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.fence import Fence, FenceStore
from drainctl.protocol import Command
from drainctl.registry import Registry
from tests.polling import wait_for

# Says it is ready (a file beside the marker), then works until the marker file exists, or until
# SIGTERM, which it logs and obeys with exit status 7.
JOB = """
import pathlib, signal, sys, time
marker = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: (print("job: SIGTERM", flush=True), sys.exit(7)))
marker.with_suffix(".ready").touch()
while not marker.exists():
    time.sleep(0.05)
sys.exit(int(sys.argv[2]))
"""


def start(settings: Settings, log: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    """``drainctl run ARGS`` as the one-off dyno scheduler.4321, its output in ``log``."""
    env = {
        **os.environ,
        "DRAINCTL_APP": settings.require_app(),
        "DRAINCTL_REDIS_URL": settings.redis_url,
        "DRAINCTL_HEARTBEAT_INTERVAL": "0.3",
        "DYNO": "scheduler.4321",
        **extra,
    }
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "drainctl", "run", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def registered(settings: Settings, marker: Path) -> dict[str, object] | None:
    """The one-off's heartbeat document once its command is ready and counted in flight."""
    if not marker.with_suffix(".ready").exists():
        return None
    client = ControlClient(settings)
    docs = [r.doc for r in Registry(client.client, settings.require_app()).live()]
    return docs[0] if docs and docs[0].get("in_flight") == 1 else None


def test_runs_registered_drain_waits_and_the_exit_status_is_the_commands(
    settings: Settings, tmp_path: Path
):
    """The one-off registers with the type from DYNO, its command and run time; a drain with
    ``--on-drain wait`` acknowledges once the command has finished; ``drainctl run`` exits with
    the command's status."""
    marker = tmp_path / "done"
    proc = start(settings, tmp_path / "run.log", "--", sys.executable, "-c", JOB, str(marker), "3")
    doc = wait_for(lambda: registered(settings, marker), timeout=20)
    assert doc["process_type"] == "scheduler"
    assert str(marker) in str(doc["command"])
    cli = [sys.executable, "-m", "drainctl", "--app", settings.require_app()]
    status = [
        subprocess.run(
            [*cli, "--redis-url", settings.redis_url, *json_flag, "status"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        for json_flag in ([], ["--json"])
    ]
    assert "scheduler" in status[0]
    assert "detail" in status[0]  # the column of the command (wrapped: tmp_path is long)
    (listed,) = json.loads(status[1])
    assert str(marker) in listed["command"]
    marker.touch()
    outcome = ControlClient(settings).send(Command.DRAIN, args={"deadline": 10}, timeout=15)
    assert outcome.ok
    assert proc.wait(20) == 3


def test_on_drain_term_forwards_sigterm_and_passes_its_exit_status(
    settings: Settings, tmp_path: Path
):
    """With ``--on-drain term`` a drain SIGTERMs the command and acknowledges when it has exited;
    the command's own exit status (7) is drainctl run's."""
    never = tmp_path / "never"
    options = ["-t", "backfill", "--on-drain", "term"]
    proc = start(
        settings, tmp_path / "run.log", *options, "--", sys.executable, "-c", JOB, str(never), "0"
    )
    doc = wait_for(lambda: registered(settings, never), timeout=20)
    assert doc["process_type"] == "backfill"
    outcome = ControlClient(settings).send(Command.DRAIN, args={"deadline": 10}, timeout=15)
    assert outcome.ok
    assert outcome.replies[0].data["finished"]
    assert proc.wait(20) == 7
    assert "job: SIGTERM" in (tmp_path / "run.log").read_text()


def test_sigterm_to_drainctl_run_goes_to_the_command(settings: Settings, tmp_path: Path):
    """The platform's SIGTERM to the one-off reaches the command, whose status is returned."""
    never = tmp_path / "never"
    proc = start(settings, tmp_path / "run.log", "--", sys.executable, "-c", JOB, str(never), "0")
    wait_for(lambda: registered(settings, never), timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 7


def fence_release(settings: Settings, release: str) -> FenceStore:
    """A deploy's fence on ``release`` (scheduler processes), for a minute."""
    store = FenceStore(redis.Redis.from_url(settings.redis_url), settings.require_app())
    store.set(Fence(release, ("scheduler",), time.time() + 60, "deploy-1"), ttl=60)
    return store


def test_when_fenced_skip_and_wait_do_not_run_the_command(settings: Settings, tmp_path: Path):
    """While the release is fenced: ``skip`` exits 0 and ``wait`` exits 75 after its bound, and
    neither runs the command."""
    fence_release(settings, "v3")
    marker = tmp_path / "m"
    job = [sys.executable, "-c", JOB, str(marker), "0"]
    log = tmp_path / "run.log"
    skip = start(settings, log, "--when-fenced", "skip", "--", *job, DRAINCTL_RELEASE="v3")
    assert skip.wait(20) == 0
    wait = start(settings, log, "--fenced-wait", "1", "--", *job, DRAINCTL_RELEASE="v3")
    assert wait.wait(20) == 75
    assert not marker.with_suffix(".ready").exists()


def test_when_fenced_wait_runs_the_command_once_the_fence_lifts(settings: Settings, tmp_path: Path):
    """A one-off started during a deploy runs when the fence is lifted (what ``drainctl unfence``
    or a failed deploy's rollback does: delete the fence, then resume)."""
    store = fence_release(settings, "v3")
    marker = tmp_path / "m"
    job = [sys.executable, "-c", JOB, str(marker), "4"]
    proc = start(settings, tmp_path / "run.log", "--", *job, DRAINCTL_RELEASE="v3")
    wait_for(lambda: registered_any(settings), timeout=20)
    assert not marker.with_suffix(".ready").exists()
    store.lift(["v3"], "deploy-1")
    assert ControlClient(settings).send(Command.RESUME, timeout=10).ok
    wait_for(lambda: marker.with_suffix(".ready").exists(), timeout=20)
    marker.touch()
    assert proc.wait(20) == 4


def registered_any(settings: Settings) -> bool:
    client = ControlClient(settings)
    return bool(Registry(client.client, settings.require_app()).live())


def test_a_command_that_cannot_start_exits_as_a_shell_would(settings: Settings, tmp_path: Path):
    """Not found: 127; found but not executable: 126; either way one line, no traceback, and
    no registry entry left behind."""
    not_executable = tmp_path / "job.sh"
    not_executable.write_text("#!/bin/sh\necho never\n")
    for index, (argv, code, says) in enumerate(
        (
            (["nosuchcommand-xyz"], 127, "drainctl: run: command not found: nosuchcommand-xyz"),
            ([str(tmp_path / "nowhere")], 127, "command not found"),
            ([str(not_executable)], 126, f"drainctl: run: cannot execute {not_executable}"),
        )
    ):
        log = tmp_path / f"run{index}.log"
        assert start(settings, log, "--", *argv).wait(20) == code
        output = log.read_text()
        assert says in output
        assert "Traceback" not in output
        assert [line for line in output.splitlines() if line.startswith("drainctl:")] == [
            output.strip().splitlines()[-1]
        ]
    assert Registry(redis.Redis.from_url(settings.redis_url), settings.require_app()).live() == []
