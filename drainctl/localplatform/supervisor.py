"""The process supervisor: runs the current release's Procfile and switches releases like Heroku.

On a new release: SIGTERM every process of the old one, start the new one at once (they overlap),
SIGKILL old processes still alive after the grace period. A process of the current release that
exits is restarted with exponential backoff (reset once it has run for a while); a process of any
other release is never (re)started. ``ps.json`` holds the process table for ``ps``.

Processes are started with ``subprocess.Popen``, not through ``sh`` as git and the push are: each
runs in its own session so SIGTERM and SIGKILL reach its whole group, and one loop polls them all
without blocking (``sh`` would add an I/O thread per process and hide the group).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from drainctl.deploy.plan import read_procfile
from drainctl.localplatform.layout import Layout, PlatformConfig, Release, write_json

logger = logging.getLogger(__name__)

TICK = 0.05
STABLE_AFTER = 30.0
SHUTDOWN_GRACE = 5.0


@dataclass
class Dyno:
    """One process slot (``worker.1``) of one release, and its current OS process."""

    process_type: str
    index: int
    release: Release
    command: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    terminated_at: float | None = None
    zombie: bool = False
    log_files: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``type.N`` as in ``DYNO``."""
        return f"{self.process_type}.{self.index}"

    def row(self) -> dict[str, object]:
        """This dyno as a line of ``ps``: name, release, pid and state."""
        if self.zombie:
            state = "zombie"
        elif self.terminated_at is not None:
            state = "stopping"
        else:
            state = "up" if self.proc is not None else "restarting"
        pid = self.proc.pid if self.proc is not None else None
        return {"dyno": self.name, "release": self.release.name, "pid": pid, "state": state}

    def signal(self, signum: int) -> None:
        """Signal the whole process group (the shell and what it started)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)


class Supervisor:
    """Runs one platform directory until SIGTERM or SIGINT."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.config: PlatformConfig = layout.config()
        self.current: Release | None = None
        self.dynos: list[Dyno] = []
        self._stop = False
        self._published: list[dict[str, object]] | None = None

    def run(self) -> None:
        """Supervise until asked to stop, then stop every process (zombies included)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.layout.pid_file.write_text(str(os.getpid()))
        try:
            while not self._stop:
                self._switch_release()
                now = time.monotonic()
                for dyno in list(self.dynos):
                    self._tend(dyno, now)
                self._publish()
                time.sleep(TICK)
        finally:
            self._shutdown()
            write_json(self.layout.ps_file, [])
            self.layout.pid_file.unlink(missing_ok=True)

    def _publish(self) -> None:
        """Write the process table for ``ps`` when it changed."""
        table = [dyno.row() for dyno in self.dynos]
        if table != self._published:
            write_json(self.layout.ps_file, table)
            self._published = table

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def _switch_release(self) -> None:
        release = self.layout.release()
        if release is None or (self.current and release.version <= self.current.version):
            return
        faults = self.layout.take_faults("zombie", "crash")
        zombie_types = list(faults.get("zombie", []))
        for dyno in self.dynos:
            if dyno.terminated_at is not None or dyno.zombie:
                continue
            if dyno.process_type in zombie_types:
                dyno.zombie = True
                zombie_types.remove(dyno.process_type)
                logger.warning("%s of %s left running (zombie fault)", dyno.name, dyno.release.name)
                continue
            dyno.signal(signal.SIGTERM)
            dyno.terminated_at = time.monotonic()
        self.current = release
        crasher = f"'{self.config.python}' -m drainctl.localplatform.crasher"
        for process_type, line in read_procfile(Path(release.path) / "Procfile").items():
            if process_type == "release":  # run once per push, by the release phase
                continue
            command = crasher if process_type == faults.get("crash") else line
            for index in range(1, self.config.scale.get(process_type, 1) + 1):
                dyno = Dyno(process_type, index, release, command)
                self.dynos.append(dyno)
                self._start(dyno)
        self.layout.launched_file.write_text(str(release.version))

    def _tend(self, dyno: Dyno, now: float) -> None:
        if dyno.proc is not None and dyno.proc.poll() is not None:
            self._exited(dyno, now)
        elif dyno.proc is None:
            # Waiting out a restart backoff. Only the current release is ever restarted: a timer
            # of a superseded release would start it after the new one.
            if not self._restartable(dyno):
                self.dynos.remove(dyno)
            elif now >= dyno.next_start:
                self._start(dyno)
        elif dyno.terminated_at is not None and now - dyno.terminated_at > self.config.grace:
            logger.warning("%s of %s: SIGKILL after the grace period", dyno.name, dyno.release.name)
            dyno.signal(signal.SIGKILL)
            dyno.terminated_at = float("inf")  # killed once; reaped at the next tick

    def _restartable(self, dyno: Dyno) -> bool:
        return dyno.release is self.current and dyno.terminated_at is None and not dyno.zombie

    def _exited(self, dyno: Dyno, now: float) -> None:
        assert dyno.proc is not None
        code = dyno.proc.returncode
        dyno.proc = None
        if not self._restartable(dyno):
            self.dynos.remove(dyno)
            return
        if now - dyno.started_at > STABLE_AFTER:
            dyno.restarts = 0
        delay = min(self.config.backoff_base * 2**dyno.restarts, self.config.backoff_max)
        dyno.restarts += 1
        dyno.next_start = now + delay
        logger.warning("%s exited with %s; restarting in %.1fs", dyno.name, code, delay)

    def _start(self, dyno: Dyno) -> None:
        release = dyno.release
        env = {
            **inherited_env(),
            **self.config.env,
            "PATH": f"{Path(self.config.python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DYNO": dyno.name,
            "PORT": str(5000 + dyno.index),
            "HEROKU_APP_NAME": self.config.app,
            "HEROKU_RELEASE_VERSION": release.name,
            "HEROKU_SLUG_COMMIT": release.commit,
            "REDIS_URL": self.config.redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        log = self.layout.logs / f"{release.name}.{dyno.name}.{dyno.restarts}.log"
        with log.open("ab") as out:
            dyno.proc = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {dyno.command}"],
                cwd=release.path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        dyno.started_at = time.monotonic()
        logger.info("started %s of %s (pid %d)", dyno.name, release.name, dyno.proc.pid)

    def _shutdown(self) -> None:
        for dyno in self.dynos:
            dyno.signal(signal.SIGTERM)
        deadline = time.monotonic() + min(self.config.grace, SHUTDOWN_GRACE)
        for dyno in self.dynos:
            if dyno.proc is None:
                continue
            try:
                dyno.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                dyno.signal(signal.SIGKILL)
                dyno.proc.wait()


def inherited_env() -> dict[str, str]:
    """The supervisor's environment without ``DRAINCTL_*``: like a Heroku dyno, a process sees
    the app's config vars, never the settings of the shell that started the platform."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DRAINCTL_")}


def main(root: Path) -> None:
    """Run the supervisor of platform directory ``root`` (logging to stderr)."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s platform: %(message)s"
    )
    Supervisor(Layout(root)).run()
