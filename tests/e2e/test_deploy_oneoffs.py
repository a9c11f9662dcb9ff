"""``drainctl deploy --one-offs`` on the local platform: the e2e app (v1: a clock, a worker)
beside a real ``drainctl run`` one-off of v1, as ``heroku run`` or Heroku Scheduler starts them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.e2e.heroku import LocalHeroku
from tests.integration.test_deploy_oneoffs import start_oneoff
from tests.polling import wait_for

# Give the drain time for the one-off to finish (heroku.deploy's own deadline is 3 s).
LONGER = ("--drain-deadline", "10", "--ack-timeout", "12")


def oneoff_state(heroku: LocalHeroku) -> str | None:
    """The one-off's state, once it is registered."""
    docs = [r.doc for r in heroku.live() if r.oneoff]
    return str(docs[0].get("state")) if docs else None


def started(heroku: LocalHeroku, cwd: Path) -> None:
    wait_for((cwd / "marker.ready").exists, 20, "the one-off's job")
    wait_for(lambda: oneoff_state(heroku) == "running", 20, "the one-off")


def test_wait_lets_the_one_off_finish_before_the_push(heroku: LocalHeroku, tmp_path: Path) -> None:
    """--one-offs wait (default): the deploy drains the one-off and pushes only once it has
    finished: every v2 process started after the one-off's job ended."""
    proc = start_oneoff(heroku.settings(), tmp_path)
    try:
        started(heroku, tmp_path)
        heroku.commit("v2")

        def finish_when_drained() -> None:
            wait_for(lambda: oneoff_state(heroku) not in (None, "running"), 60, "the drain")
            time.sleep(0.5)  # the deploy waits meanwhile
            (tmp_path / "marker").touch()

        finisher = threading.Thread(target=finish_when_drained, daemon=True)
        finisher.start()
        done, summary = heroku.deploy(*LONGER)
        finisher.join(20)
        assert done.returncode == 0, done.stderr
        assert proc.wait(20) == 0
        assert summary["one_offs"][0]["handling"] == "wait"
        assert summary["drained"] == {"clock": 1, "worker": 1, "scheduler": 1}
        new = [r.doc for r in heroku.live() if r.doc.get("release") == "v2"]
        assert {d["process_type"] for d in new} == {"clock", "worker"}
        job_ended = (tmp_path / "events").stat().st_mtime  # the job's last act
        assert all(d["started_at"] > job_ended for d in new), (new, job_ended)
    finally:
        (tmp_path / "marker").touch()
        proc.wait(20)


def test_ignore_deploys_while_the_one_off_runs_on(heroku: LocalHeroku, tmp_path: Path) -> None:
    """--one-offs ignore: v2 is deployed and verified while the v1 one-off keeps running, never
    drained; it ends on its own afterwards."""
    proc = start_oneoff(heroku.settings(), tmp_path)
    try:
        started(heroku, tmp_path)
        heroku.commit("v2")
        done, summary = heroku.deploy("--one-offs", "ignore")
        assert done.returncode == 0, done.stderr
        assert summary["one_offs"][0]["handling"] == "ignore"
        assert summary["drained"] == {"clock": 1, "worker": 1}
        assert proc.poll() is None
        assert oneoff_state(heroku) == "running"
        heroku.wait_for_release("v2")
        (tmp_path / "marker").touch()
        assert proc.wait(20) == 0
        assert (tmp_path / "events").read_text() == "one-off done\n"
    finally:
        (tmp_path / "marker").touch()
        proc.wait(20)
