"""One-off processes (``heroku run``, Heroku Scheduler jobs) as drainable instances.

``drainctl run -- CMD ARGS...`` starts CMD as a child process and a ControlListener beside it, so
the one-off shows in ``drainctl status`` (its command and how long it has run) and answers a
deploy's drain: ``wait`` lets the command finish within the drain's deadline, ``term`` forwards
SIGTERM first and then waits. A SIGTERM or SIGINT to ``drainctl run`` itself goes to the command.
The exit status is the command's (128 + N when a signal N ended it; 127 when it is not found
and 126 when it cannot be executed, as in a shell).

A one-off that starts while its release is fenced by a deploy (``--when-fenced``): ``wait`` (the
default) waits until the fence is lifted, up to a bound, and exits 75 without running the
command if it is still fenced then; ``skip`` exits 0 without running it; ``run`` runs it anyway.
"""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
import threading
import time
from enum import Enum
from types import FrameType
from typing import Any

from drainctl.adapters.base import DrainReport, JobStats, RunningJob
from drainctl.config import Settings
from drainctl.errors import CommandNotRun
from drainctl.listener import ControlListener

logger = logging.getLogger(__name__)


class OnDrain(str, Enum):
    """What a drain does to the running command."""

    WAIT = "wait"
    TERM = "term"


class WhenFenced(str, Enum):
    """What a one-off does when its release is fenced as it starts."""

    WAIT = "wait"
    SKIP = "skip"
    RUN = "run"


STILL_FENCED_EXIT = 75  # EX_TEMPFAIL: not run, try again after the deploy
CANNOT_EXECUTE_EXIT = 126
NOT_FOUND_EXIT = 127
FENCE_POLL_S = 0.2


class OneOffAdapter:
    """The listener's view of one command: running, finished, or drained before it ended."""

    def __init__(self, argv: list[str], on_drain: OnDrain) -> None:
        self.argv = argv
        self.label = shlex.join(argv)
        self.on_drain = on_drain
        self.process: subprocess.Popen[bytes] | None = None
        self.started = time.monotonic()
        self.stats = JobStats()
        self._drained = threading.Event()

    def start(self) -> subprocess.Popen[bytes]:
        """Start the command, inheriting our stdin, stdout and stderr."""
        self.started = time.monotonic()
        try:
            self.process = subprocess.Popen(self.argv)
        except OSError as exc:
            raise _not_run(self.argv[0], exc) from exc
        return self.process

    def wait(self) -> int:
        """Wait for the command; its exit status (128 + N when signal N ended it)."""
        assert self.process is not None
        code = self.process.wait()
        self.stats.jobs_done += 1
        if code != 0:
            self.stats.record_failure(self.label, "exit", f"exit status {code}")
        return 128 - code if code < 0 else code

    def drain(self, deadline: float) -> DrainReport:
        """``term``: SIGTERM the command; then wait for it up to ``deadline``."""
        began = time.monotonic()
        self._drained.set()
        process = self.process
        if process is None:
            return DrainReport()
        if self.on_drain is OnDrain.TERM and process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(deadline)
        except subprocess.TimeoutExpired:
            running = round(time.monotonic() - self.started, 3)
            still = [RunningJob(str(process.pid), self.label, running)]
            return DrainReport(still_running=still, duration_s=round(time.monotonic() - began, 4))
        return DrainReport(finished=[self.label], duration_s=round(time.monotonic() - began, 4))

    def resume(self) -> None:
        """A one-off has nothing to take up again; it only stops counting as drained."""
        self._drained.clear()

    @property
    def accepting(self) -> bool:
        """False once drained."""
        return not self._drained.is_set()

    def status(self) -> dict[str, Any]:
        """The command, how long it has run, and whether it still runs."""
        running = self.process is not None and self.process.poll() is None
        return {
            "in_flight": int(running),
            **self.stats.as_dict(),
            "command": self.label,
            "run_s": round(time.monotonic() - self.started, 1),
        }


def run_command(
    argv: list[str],
    settings: Settings,
    on_drain: OnDrain,
    when_fenced: WhenFenced = WhenFenced.WAIT,
    fenced_wait: float = 600.0,
) -> int:
    """Run ``argv`` as a registered one-off instance; returns the command's exit status."""
    adapter = OneOffAdapter(argv, on_drain)
    # Registration reads this release's deploy fence, so it is known before the command starts.
    with ControlListener(adapter=adapter, settings=settings) as listener:
        refusal = _fenced_exit(listener, when_fenced, fenced_wait)
        if refusal is not None:
            return refusal
        process = adapter.start()
        previous = {
            signum: signal.signal(signum, _forward_to(process))
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            return adapter.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _fenced_exit(listener: ControlListener, when: WhenFenced, bound: float) -> int | None:
    """None to run the command, else the exit status without running it."""
    if when is WhenFenced.RUN or not listener.deploy_fence.fenced:
        return None
    if when is WhenFenced.SKIP:
        logger.warning("release %s is fenced by a deploy: not running", listener.identity.release)
        return 0
    logger.warning(
        "release %s is fenced by a deploy: waiting up to %.0fs", listener.identity.release, bound
    )
    deadline = time.monotonic() + bound
    while listener.deploy_fence.fenced:
        if time.monotonic() >= deadline:
            logger.warning(
                "still fenced after %.0fs: not running (exit %d)", bound, STILL_FENCED_EXIT
            )
            return STILL_FENCED_EXIT
        time.sleep(FENCE_POLL_S)
    return None


def _forward_to(process: subprocess.Popen[bytes]) -> Any:
    def forward(signum: int, frame: FrameType | None) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    return forward


def _not_run(program: str, exc: OSError) -> CommandNotRun:
    if isinstance(exc, FileNotFoundError):
        return CommandNotRun(f"run: command not found: {program}", NOT_FOUND_EXIT)
    reason = exc.strerror or str(exc)
    return CommandNotRun(f"run: cannot execute {program}: {reason}", CANNOT_EXECUTE_EXIT)
