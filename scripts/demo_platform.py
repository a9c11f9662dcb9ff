"""The demo's side of the local platform: a private redis-server, one app on
``python -m drainctl.localplatform`` deployed from a git work tree, and the ``drainctl`` CLI.

Everything goes through the shipped commands, as a user rehearsing a deploy would type them. Every
child process gets the shell's environment without ``DRAINCTL_*`` (so a user's exported
``DRAINCTL_REDIS_URL`` or ``DRAINCTL_APP`` never leaks in): the app's processes get their
settings from the platform, the CLI from ``--redis-url`` and ``--app``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

ROOT = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "drainctl demo",
    "GIT_AUTHOR_EMAIL": "demo@example.invalid",
    "GIT_COMMITTER_NAME": "drainctl demo",
    "GIT_COMMITTER_EMAIL": "demo@example.invalid",
}
# The demo signs its control messages, as an app in production should (README: Security).
SECRET = secrets.token_hex(32)
T = TypeVar("T")


def clean_env(**extra: str) -> dict[str, str]:
    """The shell's environment without ``DRAINCTL_*``, no colours, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAINCTL_")}
    return env | GIT_IDENTITY | {"NO_COLOR": "1"} | extra


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    give_up = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > give_up:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
    return value


class RedisServer:
    """A throwaway redis-server on a free loopback port, in a temp dir removed afterwards."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.dir = Path(tempfile.mkdtemp(prefix="drainctl-demo-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start it and wait until it answers."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.dir / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C stops the demo, which then stops this in order
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        wait_for(lambda: _answers(client), 10, "redis-server to start")
        client.close()
        return self

    def cleanup(self) -> None:
        """Stop it and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class Platform:
    """One app on the local platform in ``root``, pushed from the work tree ``root/src``."""

    def __init__(self, root: Path, redis_url: str, app: str) -> None:
        self.root, self.redis_url, self.app = root, redis_url, app
        self.dir, self.src = root / "platform", root / "src"
        self.supervisor: subprocess.Popen[bytes] | None = None
        self._log_shown = 0

    def create(self, source: Path, *options: str) -> None:
        """Create the platform (``options``: ``--grace``, ``--env``, ``--scale`` ...), start its
        supervisor, and make ``source`` a git work tree with the ``heroku`` remote."""
        self.platform(
            "create", str(self.dir), "--app", self.app, "--redis-url", self.redis_url,
            "--env", f"DRAINCTL_SECRET={SECRET}", *options,
        )  # fmt: skip
        with (self.root / "platform.log").open("ab") as log:
            self.supervisor = subprocess.Popen(
                [sys.executable, "-m", "drainctl.localplatform", "run", str(self.dir)],
                stdout=log, stderr=subprocess.STDOUT, env=clean_env(),
                start_new_session=True,  # stopped by stop(), also after Ctrl-C
            )  # fmt: skip
        shutil.copytree(source, self.src)
        self.git("init", "--quiet", "--initial-branch=main")
        self.git("remote", "add", "heroku", str(self.dir / "repo.git"))

    def platform(self, *args: str) -> str:
        """``python -m drainctl.localplatform ARGS``; returns its output."""
        done = subprocess.run(
            [sys.executable, "-m", "drainctl.localplatform", *args],
            env=clean_env(), capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout

    def ps(self) -> list[dict[str, Any]]:
        """The platform's process table."""
        rows: list[dict[str, Any]] = json.loads(self.platform("ps", str(self.dir), "--json"))
        return rows

    def running(self, release: str) -> bool:
        """Every process is ``release`` and up, but zombies left behind on purpose."""
        rows = [row for row in self.ps() if row["state"] != "zombie"]
        return bool(rows) and all(r["release"] == release and r["state"] == "up" for r in rows)

    def git(self, *args: str) -> str:
        """Run git in the work tree."""
        done = subprocess.run(
            ["git", *args], cwd=self.src, env=clean_env(), capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def commit(self, message: str) -> None:
        """Commit a change to the app."""
        (self.src / "VERSION").write_text(message + "\n")
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``args`` in the work tree, its output to ours (stdout captured)."""
        print(f"$ {' '.join(args)}", flush=True)
        return subprocess.run(
            args, cwd=self.src, env=clean_env(), stdout=subprocess.PIPE, text=True, check=False
        )

    def drainctl(self, *args: str, echo: bool = True) -> subprocess.CompletedProcess[str]:
        """The public CLI, pointed at this app and Redis explicitly (stdout captured)."""
        cli = [sys.executable, "-m", "drainctl", "--redis-url", self.redis_url, "--app", self.app]
        if echo:
            print(f"$ drainctl {' '.join(args)}", flush=True)
        return subprocess.run(
            [*cli, *args], cwd=self.src, env=clean_env(DRAINCTL_SECRET=SECRET),
            stdout=subprocess.PIPE, text=True,
            stderr=None if echo else subprocess.DEVNULL, check=False,
        )  # fmt: skip

    def status(self) -> list[dict[str, Any]]:
        """``drainctl --json status`` (not echoed: it is polled)."""
        done = self.drainctl("--json", "status", echo=False)
        rows: list[dict[str, Any]] = json.loads(done.stdout or "[]")
        return rows

    def show_log(self) -> None:
        """Print what the platform logged since the last call (starts, SIGKILLs, zombies)."""
        lines = (self.root / "platform.log").read_text().splitlines()
        for line in lines[self._log_shown :]:
            print(f"   | {line.partition(' platform: ')[2] or line}", flush=True)
        self._log_shown = len(lines)

    def log_lines(self, needle: str) -> list[str]:
        """Lines of the platform's log that contain ``needle``."""
        text = (self.root / "platform.log").read_text()
        return [line for line in text.splitlines() if needle in line]

    def stop(self) -> None:
        """Stop the supervisor, which stops every process it started (zombies included)."""
        if self.supervisor is not None and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            self.supervisor.wait(30)
