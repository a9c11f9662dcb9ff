"""The local platform itself (``python -m drainctl.localplatform``), with real processes.

Its apps here are one-line shell Procfiles: no Redis traffic, so what is checked is the
supervisor alone: which release's processes it starts, and with what environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.polling import wait_for

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


class Platform:
    """A platform in ``root/platform`` run by its supervisor, pushed to from ``root/src``."""

    def __init__(self, root: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.dir, self.src, self.log = root / "platform", root / "src", root / "supervisor.log"
        subprocess.run(
            [sys.executable, "-m", "drainctl.localplatform", "create", str(self.dir), "--app",
             "t", "--redis-url", "redis://127.0.0.1:1/0", *options],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        with self.log.open("ab") as out:
            self.supervisor = subprocess.Popen(
                [sys.executable, "-m", "drainctl.localplatform", "run", str(self.dir)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            )  # fmt: skip
        self.src.mkdir()
        self.git("init", "--quiet", "--initial-branch=main")
        self.git("remote", "add", "heroku", str(self.dir / "repo.git"))

    def git(self, *args: str) -> None:
        """Run git in the work tree."""
        env = {**os.environ, **GIT_ENV}
        subprocess.run(["git", *args], cwd=self.src, env=env, check=True, capture_output=True)

    def release(self, procfile: str, message: str) -> None:
        """Commit this Procfile and push it: the push returns once the release is launched."""
        (self.src / "Procfile").write_text(procfile)
        (self.src / "VERSION").write_text(message)
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)
        self.git("push", "--quiet", "heroku", "HEAD:main")

    def logged(self, text: str) -> int:
        """How many lines of the supervisor's log contain ``text``."""
        return sum(text in line for line in self.log.read_text().splitlines())

    def stop(self) -> None:
        """Stop the supervisor (it stops its processes)."""
        if self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            self.supervisor.wait(30)


@pytest.fixture
def platform_factory(tmp_path: Path) -> Iterator[list[Platform]]:
    """Platforms made by the test, stopped afterwards."""
    made: list[Platform] = []
    yield made
    for platform in made:
        platform.stop()


@pytest.mark.slow
def test_superseded_release_waiting_to_restart_is_never_started(
    tmp_path: Path, platform_factory: list[Platform]
) -> None:
    """A v1 process that exited and waits out its restart backoff when v2 is released is dropped:
    v1 is never started again, even after its timer's time has passed (v2 restarted since)."""
    platform = Platform(tmp_path, "--backoff-base", "4", "--backoff-max", "4", "--grace", "2")
    platform_factory.append(platform)
    crashing = "worker: sh -c 'echo started; exit 1'\n"
    platform.release(crashing, "v1")
    wait_for(lambda: platform.logged("exited with 1; restarting in 4.0s"), 20, "v1 to exit")
    platform.release(crashing, "v2")
    # v2's first restart is due 4 s after its own exit, later than v1's timer would have fired:
    # the supervisor's single loop has passed v1's moment once it logs v2's second start.
    wait_for(lambda: platform.logged("started worker.1 of v2") == 2, 30, "v2 to restart once")
    assert platform.logged("started worker.1 of v1") == 1


def test_processes_get_config_vars_but_not_the_shells_drainctl_settings(
    tmp_path: Path, platform_factory: list[Platform]
) -> None:
    """A process sees the app's config vars and the platform's variables, never the DRAINCTL_*
    settings of the shell that started the platform (a dyno does not inherit a laptop's shell)."""
    shell = {"DRAINCTL_APP": "someone-elses-app", "DRAINCTL_REDIS_URL": "redis://elsewhere:1/0"}
    platform = Platform(tmp_path, "--env", "DRAINCTL_HEARTBEAT_INTERVAL=0.5", env=shell)
    platform_factory.append(platform)
    dump = tmp_path / "env.txt"
    dump_env = f"env > {dump}.tmp && mv {dump}.tmp {dump} && sleep 60"  # whole, or not at all
    platform.release(f"worker: sh -c '{dump_env}'\n", "v1")
    lines = wait_for(lambda: dump.exists() and dump.read_text().splitlines(), 20, "the dump")
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert env["DRAINCTL_HEARTBEAT_INTERVAL"] == "0.5"
    assert env["HEROKU_APP_NAME"] == "t"
    assert env["REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert not {"DRAINCTL_APP", "DRAINCTL_REDIS_URL"} & env.keys()
