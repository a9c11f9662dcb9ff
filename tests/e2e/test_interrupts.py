"""Ctrl-C and SIGTERM on the CLI: exit 130 and 143, and a way back from a half-done drain."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.e2e.heroku import LocalHeroku
from tests.polling import wait_for

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def start(heroku: LocalHeroku, *args: str) -> subprocess.Popen[str]:
    """``drainctl --app APP ARGS`` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "drainctl", "--app", heroku.app, *args],
        cwd=heroku.src, env=heroku.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def worker_state(heroku: LocalHeroku) -> str:
    (worker,) = heroku.live("worker")
    return str(worker.doc.get("state"))


def busy_worker(heroku: LocalHeroku) -> None:
    """A job of a few seconds in flight, so a drain has to wait for it."""
    heroku.enqueue(("long", 4.0))
    wait_for(lambda: heroku.live("worker")[0].doc.get("in_flight") == 1, what="job in flight")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_drain_names_who_is_drained_and_how_to_resume(
    heroku: LocalHeroku, signum: signal.Signals
) -> None:
    """130 on Ctrl-C, 143 on SIGTERM; the message names the draining worker and the resume
    command, which then brings it back."""
    busy_worker(heroku)
    drain = start(heroku, "drain", "-t", "worker", "--deadline", "10")
    wait_for(lambda: worker_state(heroku) == "draining", what="the worker to drain")
    drain.send_signal(signum)
    _, err = drain.communicate(timeout=30)
    assert drain.returncode == CODES[signum], err
    (worker,) = heroku.live("worker")
    assert f"draining or drained: worker.1 ({worker.instance_id})" in err
    resume = f"drainctl --app {heroku.app} resume -t worker"
    assert f"resume them with `{resume}`" in err
    assert "Aborted!" not in err
    wait_for(lambda: worker_state(heroku) == "drained", what="the drain to finish")
    assert heroku.drainctl("resume", "-t", "worker").returncode == 0
    # The reply comes first; the heartbeat document follows a moment later.
    wait_for(lambda: worker_state(heroku) == "running", 5, "the worker to run again")


def test_sigterm_during_a_deploy_exits_143_and_resumes(heroku: LocalHeroku) -> None:
    """SIGTERM while the deploy drains: exit 143, fence lifted, app resumed, nothing pushed."""
    busy_worker(heroku)
    heroku.commit("v2")
    deploy = start(heroku, "deploy", "--remote", "heroku", "--drain-deadline", "10")
    wait_for(lambda: worker_state(heroku) == "draining", what="the worker to drain")
    deploy.send_signal(signal.SIGTERM)
    _, err = deploy.communicate(timeout=30)
    assert deploy.returncode == 143, err
    assert "the fence was lifted and the app resumed" in err
    assert heroku.fence_keys() == []
    assert heroku.layout.launched() == 1
    heroku.wait_for_release("v1")
