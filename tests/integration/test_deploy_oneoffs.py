"""``drainctl deploy --one-offs wait|ignore`` and ``release-phase`` with a real ``drainctl run``
one-off (a subprocess), a worker of the old release and its replacement (listeners in this
process), on a real redis-server.

The push command only writes ``pushed`` to an events file the one-off's job writes to as well, so
the file shows what happened first; a watcher stands in for the platform: when ``pushed``
appears it stops the old worker and starts one of the new release.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from drainctl.config import Settings
from drainctl.fence import FenceStore
from drainctl.listener import ControlListener
from drainctl.protocol import State
from drainctl.registry import Registry
from tests.e2e.heroku import git_work_tree
from tests.integration.conftest import StartListener
from tests.integration.test_release_phase import release_phase
from tests.polling import wait_for
from tests.readme_blocks import README, blocks

# The one-off's job (job.py): says it is ready, works until the marker file exists (or for at
# most argv[3] seconds), then writes "one-off done" to the events file.
JOB = """
import pathlib, sys, time
events, marker = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
marker.with_suffix(".ready").touch()
give_up = time.monotonic() + float(sys.argv[3])
while not marker.exists() and time.monotonic() < give_up:
    time.sleep(0.05)
with events.open("a") as out:
    out.write("one-off done\\n")
"""
JOB_COMMAND = ["job.py", "events", "marker", "60"]
COMMAND_TEXT = "job.py events marker 60"  # the end of the command line the plan shows


@dataclass
class Scene:
    """The app before the deploy: a v1 worker, a v1 one-off, the events file."""

    settings: Settings
    cwd: Path
    worker: ControlListener
    oneoff: subprocess.Popen[str]
    marker: Path
    start_listener: StartListener
    new: list[ControlListener] = field(default_factory=list)

    @property
    def events(self) -> list[str]:
        path = self.cwd / "events"
        return path.read_text().splitlines() if path.exists() else []

    def oneoff_doc(self) -> dict[str, Any] | None:
        client = redis.Redis.from_url(self.settings.redis_url)
        try:
            live = Registry(client, self.settings.app or "").live()
        finally:
            client.close()
        return next((r.doc for r in live if "command" in r.doc), None)

    def deploy(self, *args: str, on_drained: Callable[[], None] = lambda: None) -> Deployed:
        """``drainctl deploy --json`` with a push that only says so; the watcher plays the
        platform (and calls ``on_drained`` once the one-off is told to drain)."""
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=self.cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        stop = threading.Event()
        watcher = threading.Thread(target=self._platform, args=(commit, stop, on_drained))
        watcher.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "drainctl", "--redis-url", self.settings.redis_url,
                 "--app", self.settings.app or "", "deploy", "--json",
                 "--push-cmd", "echo pushed >> events", "--stable-for", "0.5",
                 "--verify-timeout", "20", "--zombie-grace", "5", *args],
                cwd=self.cwd, capture_output=True, text=True, check=False, timeout=90,
            )  # fmt: skip
        finally:
            stop.set()
            watcher.join(10)
        lines = done.stdout.strip().splitlines()
        return Deployed(done, json.loads(lines[-1]) if lines else {})

    def _platform(self, commit: str, stop: threading.Event, on_drained: Callable[[], None]) -> None:
        drained = False
        while not stop.wait(0.1):
            doc = self.oneoff_doc()
            if not drained and doc is not None and doc.get("state") != "running":
                drained = True
                on_drained()
            if "pushed" in self.events and not self.new:
                self.worker.stop()
                self.new.append(self.start_listener("worker", release="v2", commit=commit))


@dataclass
class Deployed:
    done: subprocess.CompletedProcess[str]
    summary: dict[str, Any]


def start_oneoff(
    settings: Settings, cwd: Path, *args: str, command: list[str] = JOB_COMMAND
) -> subprocess.Popen[str]:
    """``drainctl run ARGS -- python COMMAND`` in ``cwd`` as the Heroku Scheduler dyno
    scheduler.4321 of v1 (``COMMAND`` is job.py by default)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DRAINCTL_", "HEROKU_"))},
        "DRAINCTL_APP": settings.app or "",
        "DRAINCTL_REDIS_URL": settings.redis_url,
        "DRAINCTL_HEARTBEAT_INTERVAL": "0.3",
        "DRAINCTL_RELEASE": "v1",
        "DYNO": "scheduler.4321",
    }
    (cwd / "job.py").write_text(JOB)
    with (cwd / "run.log").open("a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "drainctl", "run", *args, "--", sys.executable, *command],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


@pytest.fixture
def scene(settings: Settings, start_listener: StartListener, tmp_path: Path) -> Iterator[Scene]:
    cwd = git_work_tree(tmp_path / "app")
    worker = start_listener("worker", release="v1")
    oneoff = start_oneoff(settings, cwd)
    scene = Scene(settings, cwd, worker, oneoff, cwd / "marker", start_listener)
    try:
        wait_for(lambda: scene.marker.with_suffix(".ready").exists(), 20, "the one-off's job")
        wait_for(lambda: (scene.oneoff_doc() or {}).get("in_flight") == 1, 20, "the one-off")
        yield scene
    finally:
        scene.marker.touch()
        if oneoff.poll() is None and oneoff.wait(20) is None:
            oneoff.kill()


def fence_types(settings: Settings, release: str) -> tuple[str, ...]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        fence = FenceStore(client, settings.app or "").get(release)
    finally:
        client.close()
    assert fence is not None
    return fence.process_types


def test_wait_drains_the_one_off_and_pushes_after_it_finished(scene: Scene) -> None:
    """Default --one-offs wait: the plan lists the one-off (command, run time) as waited for; the
    deploy drains it, it finishes ("one-off done") before the push, and the deploy succeeds with
    the new release verified on the worker type only."""
    deployed = scene.deploy(on_drained=scene.marker.touch)
    done, summary = deployed.done, deployed.summary
    assert done.returncode == 0, done.stderr
    assert scene.events == ["one-off done", "pushed"]
    assert "one-offs: 1 running, waited for" in done.stderr
    assert "== plan: drain 1 worker and 1 one-off(s)" in done.stderr
    row = next(line for line in done.stderr.splitlines() if "scheduler.4321" in line)
    assert f"{COMMAND_TEXT} (" in row
    assert row.endswith("s)")
    (listed,) = summary["one_offs"]
    assert (listed["dyno"], listed["handling"], listed["release"]) == (
        "scheduler.4321",
        "wait",
        "v1",
    )
    assert COMMAND_TEXT in listed["command"]
    assert listed["run_s"] > 0
    assert summary["drained"] == {"worker": 1, "scheduler": 1}
    assert summary["verify"]["required"] == {"worker": 1}
    assert scene.oneoff.wait(20) == 0


def test_ignore_pushes_while_the_one_off_keeps_running(scene: Scene) -> None:
    """--one-offs ignore: listed as ignored, not drained, not fenced, not counted; the deploy
    pushes and succeeds while the one-off keeps running, and it finishes afterwards."""
    deployed = scene.deploy("--one-offs", "ignore")
    done, summary = deployed.done, deployed.summary
    assert done.returncode == 0, done.stderr
    assert scene.events == ["pushed"]
    assert "one-offs: 1 running, ignored (--one-offs ignore)" in done.stderr
    row = next(line for line in done.stderr.splitlines() if "scheduler.4321" in line)
    assert "ignored" in row
    assert COMMAND_TEXT in row
    assert summary["one_offs"][0]["handling"] == "ignore"
    assert summary["drained"] == {"worker": 1}
    assert summary["verify"]["required"] == {"worker": 1}
    assert fence_types(scene.settings, "v1") == ("worker",)
    assert scene.oneoff.poll() is None
    assert (scene.oneoff_doc() or {}).get("state") == "running"
    scene.marker.touch()
    assert scene.oneoff.wait(20) == 0
    assert scene.events == ["pushed", "one-off done"]


def test_a_one_off_that_outlives_the_deadline_fails_the_deploy_before_the_push(
    scene: Scene,
) -> None:
    """--one-offs wait with a job longer than --drain-deadline: exit 3 naming the one-off,
    nothing pushed, no fence left, the worker and the one-off resumed and still running."""
    deployed = scene.deploy("--drain-deadline", "1", "--ack-timeout", "4")
    done, summary = deployed.done, deployed.summary
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "drainctl: drain: 1 failed, 0 did not answer; nothing was pushed and the app was "
        "resumed; one-off(s) not done in time: scheduler.4321 ("
    )
    assert "--one-offs ignore" in last
    assert summary["pushed"] is False
    assert scene.events == []
    assert scene.worker.state is State.RUNNING
    client = redis.Redis.from_url(scene.settings.redis_url)
    try:
        assert client.keys(f"drainctl:{{{scene.settings.app}}}:fence:*") == []
    finally:
        client.close()
    assert scene.oneoff.poll() is None
    wait_for(lambda: (scene.oneoff_doc() or {}).get("state") == "running", 10, "resumed")
    scene.marker.touch()
    assert scene.oneoff.wait(20) == 0


@pytest.mark.parametrize("one_offs", ["wait", "ignore"])
def test_release_phase_takes_one_offs_as_configured(
    settings: Settings, start_listener: StartListener, tmp_path: Path, one_offs: str
) -> None:
    """release-phase --one-offs: under wait a --on-drain term one-off is SIGTERMed, acknowledges
    and is fenced with its type; under ignore it runs on, unfenced. Either way the new release
    is expected to bring back the Procfile's types only."""
    cwd = git_work_tree(tmp_path / "app")
    old = [start_listener(kind, release="v1") for kind in ("clock", "worker")]
    proc = start_oneoff(settings, cwd, "--on-drain", "term")
    try:
        wait_for((cwd / "marker.ready").exists, 20, "the one-off's job")
        done, summary = release_phase(settings, cwd, "--one-offs", one_offs)
        assert done.returncode == 0, done.stderr
        assert summary["one_offs"][0]["handling"] == one_offs
        if one_offs == "wait":
            assert summary["drained"] == {"clock": 1, "worker": 1, "scheduler": 1}
            assert fence_types(settings, "v1") == ("clock", "worker", "scheduler")
            assert proc.wait(20) == 143  # SIGTERM ended the job
        else:
            assert summary["drained"] == {"clock": 1, "worker": 1}
            assert fence_types(settings, "v1") == ("clock", "worker")
            assert proc.poll() is None
        assert [listener.state for listener in old] == [State.DRAINED, State.DRAINED]
    finally:
        (cwd / "marker").touch()
        if proc.poll() is None:
            proc.wait(20)


def test_hook_install_keeps_the_one_offs_choice(tmp_path: Path) -> None:
    """``drainctl hook install --one-offs ignore`` writes the choice into the hook's command."""
    cwd = git_work_tree(tmp_path / "app")
    done = subprocess.run(
        [sys.executable, "-m", "drainctl", "hook", "install", "--one-offs", "ignore"],
        cwd=cwd, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    hook = (cwd / ".git" / "hooks" / "pre-push").read_text()
    assert "--one-offs ignore" in shlex.join(shlex.split(hook.splitlines()[-1]))


def readme_task_example() -> str:
    """The README's scheduler task that processes a task table (process_tasks.py)."""
    (block,) = [b for b in blocks(README.read_text()) if "stand-in for the real work" in b.code]
    return block.code


def tasks_done(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=5) as db:
        return int(db.execute("SELECT count(*) FROM tasks WHERE done = 1").fetchone()[0])


def test_readme_task_table_example_stops_between_batches_in_a_deploy(
    settings: Settings, start_listener: StartListener, tmp_path: Path
) -> None:
    """The README's process_tasks.py under ``drainctl run --on-drain term``: the deploy (wait)
    SIGTERMs it, it stops after the batch in progress and exits 0 before the push; every batch
    done is committed whole, and the next run does the rest."""
    cwd = git_work_tree(tmp_path / "app")
    (cwd / "process_tasks.py").write_text(readme_task_example())
    with sqlite3.connect(cwd / "tasks.db") as db:
        db.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, payload TEXT, done INT)")
        db.executemany("INSERT INTO tasks (payload) VALUES (?)", [(f"t{i}",) for i in range(400)])
    db.close()
    worker = start_listener("worker", release="v1")
    proc = start_oneoff(settings, cwd, "--on-drain", "term", command=["process_tasks.py"])
    scene = Scene(settings, cwd, worker, proc, cwd / "marker", start_listener)
    try:
        wait_for(lambda: tasks_done(cwd / "tasks.db") > 0, 20, "the first batch")
        deployed = scene.deploy()
        assert deployed.done.returncode == 0, deployed.done.stderr
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "stopped by SIGTERM" in (cwd / "run.log").read_text()
    assert deployed.summary["one_offs"][0]["command"].endswith("process_tasks.py")
    done = tasks_done(cwd / "tasks.db")
    assert 0 < done < 400
    assert done % 100 == 0
    rest = subprocess.run(
        [sys.executable, "process_tasks.py"],
        cwd=cwd, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert rest.stdout.strip() == f"processed {400 - done} task(s)"
    assert tasks_done(cwd / "tasks.db") == 400
