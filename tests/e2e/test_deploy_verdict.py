"""A deploy's verdict on the local platform: no-op and racing deploys, the way out, no DYNO."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drainctl.channel import ControlClient
from drainctl.fence import Fence, FenceStore
from drainctl.protocol import Command
from tests.conftest import assert_no_lasting_keys
from tests.e2e.heroku import APP_SOURCE, LocalHeroku
from tests.polling import wait_for
from tests.redis_server import RedisServer

JOBS = [(f"job-{i}", 0.05) for i in range(6)]
DEPLOY_ARGS = [
    "deploy", "--json", "--remote", "heroku", "--drain-deadline", "3", "--ack-timeout", "4",
    "--stable-for", "1", "--zombie-grace", "4", "--verify-timeout", "25",
]  # fmt: skip


def start_deploy(heroku: LocalHeroku, cwd: Path) -> subprocess.Popen[str]:
    """``drainctl deploy --json`` in ``cwd``, in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "drainctl", "--app", heroku.app, *DEPLOY_ARGS],
        cwd=cwd, env=heroku.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(deploy: subprocess.Popen[str]) -> tuple[int, dict[str, object], str]:
    """Exit code, ``--json`` summary and stderr of a background deploy."""
    out, err = deploy.communicate(timeout=90)
    lines = out.strip().splitlines()
    return deploy.returncode, json.loads(lines[-1]) if lines else {}, err


def assert_work_continues(heroku: LocalHeroku) -> None:
    """Jobs run and the clock fires."""
    (clock,) = heroku.live("clock")
    start = heroku.fires(clock.instance_id)
    heroku.enqueue(*JOBS)
    wait_for(lambda: len(heroku.runs()) == len(JOBS), what="every job to run")
    wait_for(lambda: heroku.fires(clock.instance_id) >= start + 2, what="the clock to fire")


def test_redeploy_of_the_live_commit_is_a_noop(heroku: LocalHeroku) -> None:
    """The remote already has the commit: exit 0, verdict noop, nothing drained, no fence."""
    commit = heroku.git("rev-parse", "HEAD")
    done, summary = heroku.deploy()
    assert done.returncode == 0, done.stderr
    assert summary["verdict"] == "noop"
    assert summary["drained"] == {}
    assert f"nothing to deploy: heroku already at {commit[:12]}" in done.stderr
    assert heroku.fence_keys() == []
    assert heroku.layout.launched() == 1
    heroku.wait_for_release("v1")
    assert_work_continues(heroku)
    (record,) = json.loads(heroku.drainctl("history", "--json").stdout)
    assert (record["verdict"], record["exit_code"], record["commit"]) == ("noop", 0, commit)


def test_a_noop_deploy_lifts_a_fence_left_on_the_live_release(heroku: LocalHeroku) -> None:
    """An abandoned deploy left v1 (the live release) fenced and drained: redeploying its commit
    lifts that fence and resumes everyone, so a fence never stays on the newest live release."""
    seconds, micros = heroku.redis.time()
    fence = Fence("v1", ("clock", "worker"), seconds + micros / 1e6 + 60, "abandoned")
    FenceStore(heroku.redis, heroku.app).set(fence, 60)
    client = ControlClient(heroku.settings())
    drained = client.send(Command.DRAIN, args={"deadline": 3, "fences": [fence.as_arg()]})
    assert drained.ok
    assert heroku.drainctl("resume").returncode == 3  # fenced: refused
    done, summary = heroku.deploy()
    assert done.returncode == 0, done.stderr
    assert summary["verdict"] == "noop"
    assert "the live release v1 is fenced: lifting it" in done.stderr
    assert heroku.fence_keys() == []
    heroku.wait_for_release("v1")


def test_push_that_releases_nothing_resumes_the_drained_app(heroku: LocalHeroku) -> None:
    """With --push-cmd the remote is not asked first: git's "Everything up-to-date" shows no
    release happened, so the deploy lifts its fence, resumes everyone and reports noop."""
    done, summary = heroku.deploy("--push-cmd", "git push heroku HEAD:main")
    assert done.returncode == 0, done.stderr
    assert summary["verdict"] == "noop"
    assert summary["drained"] == {"clock": 1, "worker": 1}
    assert heroku.fence_keys() == []
    assert heroku.layout.launched() == 1
    heroku.wait_for_release("v1")
    assert_work_continues(heroku)


def test_two_deploys_of_one_commit_one_wins(heroku: LocalHeroku) -> None:
    """Started together: one deploys (0), the other meets the lock (7) and names the holder."""
    heroku.commit("v2")
    codes = {}
    deploys = [start_deploy(heroku, heroku.src) for _ in range(2)]
    for deploy in deploys:
        code, summary, err = finish(deploy)
        codes[code] = (summary, err)
    assert set(codes) == {0, 7}, codes
    assert "another deploy is in progress: deploy " in codes[7][1]
    assert codes[7][0]["verdict"] == "failed"
    heroku.wait_for_release("v2")
    assert [k.decode().rsplit(":", 1)[1] for k in heroku.fence_keys()] == ["v1"]


def test_two_deploys_of_different_commits_leave_the_winner_live(
    heroku: LocalHeroku, tmp_path: Path
) -> None:
    """Two work trees deploy different commits at once: one exits 0, the other 7 (or 4 if git
    refused it); the winner's commit runs everywhere and only the old release is fenced."""
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "--quiet", "--origin", "heroku", str(heroku.layout.repo),
                    str(other)], check=True, env=heroku.env)  # fmt: skip
    (other / "VERSION").write_text("other\n")
    subprocess.run(["git", "commit", "--quiet", "-am", "other"], cwd=other, env=heroku.env,
                   check=True)  # fmt: skip
    heroku.commit("v2")
    deploys = {"src": start_deploy(heroku, heroku.src), "other": start_deploy(heroku, other)}
    results = {name: finish(deploy) for name, deploy in deploys.items()}
    codes = sorted(code for code, _, _ in results.values())
    assert codes in ([0, 4], [0, 7]), results
    (winner,) = [summary for code, summary, _ in results.values() if code == 0]
    heroku.wait_for_release("v2")
    assert {r.doc["commit"] for r in heroku.live()} == {winner["commit"]}
    assert [k.decode().rsplit(":", 1)[1] for k in heroku.fence_keys()] == ["v1"]


def test_failed_verify_prints_the_command_that_restores_the_app(heroku: LocalHeroku) -> None:
    """A zombie fails the verify (5) and v1 stays fenced; the printed command resumes it."""
    heroku.commit("v2")
    heroku.fault("--zombie", "worker")
    done, summary = heroku.deploy()
    assert done.returncode == 5, done.stderr
    undo = f"drainctl --app {heroku.app} unfence --release v1"
    assert summary["undo"] == undo
    assert f"to undo: {undo}" in done.stderr
    restored = heroku.drainctl(*shlex.split(undo)[3:])
    assert restored.returncode == 0, restored.stderr
    assert "lifted the fence on v1" in restored.stdout
    assert heroku.fence_keys() == []
    wait_for(
        lambda: (
            {r.doc["state"] for r in heroku.live("worker")} == {"running"}
            and heroku.release_of("worker") == {"v1", "v2"}
        ),
        what="the zombie and the new worker both running",
    )


@pytest.fixture
def dynoless(tmp_path: Path, redis_server: RedisServer, app: str) -> Iterator[LocalHeroku]:
    """The e2e app with four workers and no DYNO, as foreman or honcho run a Procfile."""
    source = tmp_path / "source"
    shutil.copytree(APP_SOURCE, source)
    (source / "Procfile").write_text(
        "clock: env -u DYNO DRAINCTL_PROCESS_TYPE=clock python ticker.py\n"
        "worker: env -u DYNO DRAINCTL_PROCESS_TYPE=worker python worker.py\n"
    )
    platform = LocalHeroku(tmp_path / "app", redis_server.url, app, source=source)
    try:
        yield platform.start(scale={"worker": 4})
    finally:
        platform.stop()
    assert_no_lasting_keys(redis_server.url, app)


def test_four_workers_without_dyno_deploy(dynoless: LocalHeroku) -> None:
    """Four new workers without DYNO are four instances, not three restarts of one."""
    wait_for(lambda: len(dynoless.live("worker")) == 4, what="four workers")
    assert all(r.doc.get("dyno") is None for r in dynoless.live())
    dynoless.commit("v2")
    done, summary = dynoless.deploy()
    assert done.returncode == 0, done.stderr
    assert summary["verify"]["stable"] == {"clock": 1, "worker": 4}
    assert summary["verify"]["crash_loops"] == []
    dynoless.wait_for_release("v2")
    assert len(dynoless.live("worker")) == 4


def test_verify_resumes_and_exits_0_when_nothing_was_deployed(heroku: LocalHeroku) -> None:
    """`verify --resume-if-not-deployed` for a commit that never came up: it lifts the fence,
    resumes the old release, says so and exits 0."""
    seconds, micros = heroku.redis.time()
    fence = Fence("v1", ("clock", "worker"), seconds + micros / 1e6 + 60, "hook-deploy")
    FenceStore(heroku.redis, heroku.app).set(fence, 60)
    client = ControlClient(heroku.settings())
    assert client.send(Command.DRAIN, args={"deadline": 3, "fences": [fence.as_arg()]}).ok
    commit = heroku.commit("never pushed")
    done = heroku.drainctl(
        "verify", "--commit", commit, "--verify-timeout", "1", "--resume-if-not-deployed"
    )
    assert done.returncode == 0, done.stderr
    assert "nothing was deployed (no instance of the new release came up)" in done.stdout
    assert "lifted the fence on v1 and resumed it" in done.stdout
    assert heroku.fence_keys() == []
    heroku.wait_for_release("v1")


def test_history_lists_deploys_newest_first(heroku: LocalHeroku) -> None:
    """`drainctl history` shows who deployed what, from and to which release, and the verdict."""
    commit = heroku.commit("v2")
    assert heroku.deploy()[0].returncode == 0
    assert heroku.deploy()[0].returncode == 0  # the same commit again: a no-op
    shown = heroku.drainctl("history", "-n", "5")
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if commit[:12] in line]
    assert len(rows) == 2
    assert "noop (0)" in rows[0]
    assert "v1" in rows[1]
    assert "v2" in rows[1]
    assert "ok (0)" in rows[1]


def test_a_fenced_new_release_is_not_up_until_it_takes_work(heroku: LocalHeroku) -> None:
    """New instances that come up drained (a fence left on their release) fail verify; once
    `drainctl unfence` lets them take work, the same verify succeeds."""
    seconds, micros = heroku.redis.time()
    fence = Fence("v2", ("clock", "worker"), seconds + micros / 1e6 + 60, "stray")
    FenceStore(heroku.redis, heroku.app).set(fence, 60)
    commit = heroku.commit("v2")
    heroku.git("push", "--quiet", "heroku", "HEAD:main")
    wait_for(lambda: heroku.release_of("worker") == {"v2"}, what="v2 to start")
    wait_for(lambda: heroku.live("worker")[0].doc["state"] == "drained", what="v2 held drained")
    verify = ("verify", "--commit", commit, "--stable-for", "1", "--zombie-grace", "4")
    fenced = heroku.drainctl(*verify, "--verify-timeout", "3")
    assert fenced.returncode == 5, fenced.stderr
    assert "worker: 0/1 stable on the new release" in fenced.stderr
    assert "to undo: drainctl --app" in fenced.stderr
    lifted = heroku.drainctl("unfence", "--release", "v2")
    assert lifted.returncode == 0, lifted.stderr
    done = heroku.drainctl(*verify, "--verify-timeout", "20")
    assert done.returncode == 0, done.stderr
