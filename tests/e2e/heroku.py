"""A local Heroku for e2e tests: the platform supervisor, an app repo with a remote, and helpers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from drainctl.config import Settings
from drainctl.localplatform.layout import Layout
from drainctl.registry import InstanceRecord, Registry
from tests.polling import wait_for

APP_SOURCE = Path(__file__).parent / "app"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "drainctl tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "drainctl tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
}
HEARTBEAT = "0.5"


class LocalHeroku:
    """One app on the local platform, deployed from a git work tree in ``root/src``."""

    def __init__(self, root: Path, redis_url: str, app: str, source: Path = APP_SOURCE) -> None:
        self.root, self.redis_url, self.app = root, redis_url, app
        self.layout = Layout(root / "platform")
        self.src = root / "src"
        self.source = source
        self.redis = redis.Redis.from_url(redis_url)
        self.registry = Registry(self.redis, app)
        self.supervisor: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, **GIT_ENV, "DRAINCTL_REDIS_URL": redis_url, "NO_COLOR": "1"}

    # -- set-up ----------------------------------------------------------------------------

    def start(
        self,
        grace: float = 2.0,
        env: dict[str, str] | None = None,
        types: tuple[str, ...] = ("clock", "worker"),
        scale: dict[str, int] | None = None,
    ) -> LocalHeroku:
        """Create the platform, start its supervisor, commit the app and release v1."""
        config = {"DRAINCTL_HEARTBEAT_INTERVAL": HEARTBEAT, "APP_GRACE": str(grace), **(env or {})}
        self.platform(
            "create", str(self.layout.root), "--app", self.app, "--redis-url", self.redis_url,
            "--grace", str(grace), "--backoff-base", "0.2", "--backoff-max", "0.5",
            *(arg for key, value in config.items() for arg in ("--env", f"{key}={value}")),
            *(arg for key, n in (scale or {}).items() for arg in ("--scale", f"{key}={n}")),
        )  # fmt: skip
        with (self.root / "supervisor.log").open("ab") as log:
            self.supervisor = subprocess.Popen(
                [sys.executable, "-m", "drainctl.localplatform", "run", str(self.layout.root)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        shutil.copytree(self.source, self.src)
        self.git("init", "--quiet", "--initial-branch=main")
        self.git("remote", "add", "heroku", str(self.layout.repo))
        self.commit("v1")
        self.git("push", "--quiet", "heroku", "HEAD:main")
        self.wait_for_release("v1", types)
        return self

    def stop(self) -> None:
        """Stop every process (the supervisor stops its children) and remove the app's data."""
        if self.supervisor is not None and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            self.supervisor.wait(30)
        # On Ctrl-C the demo's redis-server may already be gone: nothing left to clean there.
        with contextlib.suppress(redis.ConnectionError):
            for key in self.redis.scan_iter(match=f"e2e:{self.app}:*"):
                self.redis.delete(key)
        self.redis.close()

    # -- actions ---------------------------------------------------------------------------

    def platform(self, *args: str) -> None:
        """Run ``python -m drainctl.localplatform ARGS``."""
        subprocess.run(
            [sys.executable, "-m", "drainctl.localplatform", *args],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def fault(self, *args: str) -> None:
        """Inject faults into the next push."""
        self.platform("fault", str(self.layout.root), *args)

    def git(self, *args: str) -> str:
        """Run git in the app's work tree."""
        done = subprocess.run(
            ["git", *args], cwd=self.src, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def git_result(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run git in the app's work tree; the completed process, whatever its exit code."""
        return subprocess.run(
            ["git", *args],
            cwd=self.src,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def commit(self, message: str) -> str:
        """Commit a change to the app; returns the new commit's sha."""
        (self.src / "VERSION").write_text(message + "\n")
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD")

    def drainctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """Run the drainctl CLI in the app's work tree."""
        return subprocess.run(
            [sys.executable, "-m", "drainctl", "--app", self.app, *args],
            cwd=self.src,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def deploy(self, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """``drainctl deploy --json`` with short test timings; the process and its summary."""
        done = self.drainctl(
            "deploy", "--json", "--remote", "heroku", "--drain-deadline", "3",
            "--ack-timeout", "4", "--stable-for", "1", "--zombie-grace", "4",
            "--verify-timeout", "25", *args,
        )  # fmt: skip
        lines = done.stdout.strip().splitlines()
        return done, json.loads(lines[-1]) if lines else {}

    def enqueue(self, *jobs: tuple[str, float]) -> None:
        """Put jobs ``(id, seconds)`` on the worker's queue."""
        for job_id, seconds in jobs:
            self.redis.lpush(self.key("queue"), json.dumps({"id": job_id, "seconds": seconds}))

    # -- observations ----------------------------------------------------------------------

    def key(self, name: str) -> str:
        """A key of the test app's ledger."""
        return f"e2e:{self.app}:{name}"

    def live(self, process_type: str | None = None) -> list[InstanceRecord]:
        """Live, non-stale instances (of one type)."""
        records = self.registry.live({process_type} if process_type else None)
        return [r for r in records if not r.stale]

    def release_of(self, process_type: str) -> set[str]:
        """Releases the live instances of a type report."""
        return {str(r.doc.get("release")) for r in self.live(process_type)}

    def wait_for_release(
        self, release: str, types: tuple[str, ...] = ("clock", "worker"), timeout: float = 30
    ) -> None:
        """Until every type runs (only) ``release`` and is in state running."""

        def ready() -> bool:
            return all(
                self.release_of(t) == {release}
                and all(r.doc.get("state") == "running" for r in self.live(t))
                for t in types
            )

        wait_for(ready, timeout, f"release {release} running")

    def runs(self) -> dict[str, int]:
        """How many times each job ran."""
        raw = self.redis.hgetall(self.key("runs"))
        return {k.decode(): int(v) for k, v in raw.items()}

    def fires(self, instance_id: str) -> int:
        """How many ticks an instance fired."""
        return int(self.redis.hget(self.key("fires"), instance_id) or 0)

    def fence_keys(self) -> list[bytes]:
        """The app's fence keys."""
        return list(self.redis.scan_iter(match=f"drainctl:{{{self.app}}}:fence:*"))

    def settings(self) -> Settings:
        """Settings to talk to the app."""
        return Settings(redis_url=self.redis_url, app=self.app)


def git_work_tree(path: Path) -> Path:
    """A git work tree with one commit, for ``drainctl deploy --push-cmd``."""
    subprocess.run(["git", "init", "--quiet", str(path)], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "--quiet",
         "--allow-empty", "-m", "init"],
        cwd=path, check=True,
    )  # fmt: skip
    return path
