"""Drain on SIGTERM: what a platform sends before it kills a process (Heroku: 30 s later).

``drain_on_sigterm(listener)`` must be called from the main thread (Python only lets the main
thread install signal handlers). On SIGTERM it drains in a background thread, so the main
thread can finish the job it is running, with a deadline of the grace period minus a margin;
then it runs the ``before_exit`` hooks (persist a schedule, release a lease), stops the listener,
calls any handler that was installed before (chaining), and ends the process with exit code 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from drainctl.adapters.base import DrainReport
from drainctl.errors import ConfigError
from drainctl.listener import ControlListener

logger = logging.getLogger(__name__)

ExitHook = Callable[[DrainReport], None]


def drain_on_sigterm(
    listener: ControlListener,
    *,
    grace: float = 30.0,
    margin: float = 5.0,
    before_exit: list[ExitHook] | None = None,
    exit_process: bool = True,
) -> threading.Event:
    """Install the handler; returns an Event set once the drain and hooks are done."""
    if threading.current_thread() is not threading.main_thread():
        raise ConfigError(
            "drain_on_sigterm must be called from the main thread (Python installs signal "
            "handlers only there); call it from your entry point before starting work"
        )
    previous = signal.getsignal(signal.SIGTERM)
    done = threading.Event()
    started = threading.Event()
    hooks = list(before_exit or [])

    def shut_down() -> None:
        deadline = max(0.0, grace - margin)
        logger.warning("SIGTERM: draining with a %.1fs deadline", deadline)
        report = DrainReport()
        try:
            report = listener.drain(deadline, final=True)
            for hook in hooks:
                hook(report)
        except Exception:
            logger.exception("error while draining on SIGTERM")
        finally:
            listener.stop()
            done.set()
        outcome = [
            "complete" if report.complete else f"{len(report.still_running)} job(s) still running"
        ]
        if report.handed_back:  # cut off at the deadline and put back: not lost, but not done
            outcome.append(f"{len(report.handed_back)} handed back")
        logger.warning("SIGTERM: drained (%s); exiting", ", ".join(outcome))
        if callable(previous):
            _call_previous(previous)
        if exit_process:
            _exit(0)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if started.is_set():
            return
        started.set()
        threading.Thread(target=shut_down, name="drainctl-sigterm", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    return done


def _call_previous(previous: Callable[[int, FrameType | None], Any]) -> None:
    try:
        previous(signal.SIGTERM, None)
    except BaseException:  # a chained handler's SystemExit must not stop our exit
        logger.debug("the chained SIGTERM handler raised", exc_info=True)


def _exit(code: int) -> None:
    # os._exit, because the main thread may be blocked in the host's loop; flush first.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
