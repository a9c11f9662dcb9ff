"""Run the push (``git push REMOTE REF`` or ``--push-cmd``) through ``sh``, streaming its output."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

from drainctl.errors import PushFailed

# Set for the push command: the deploy that runs it (see the pre-push hook).
DEPLOY_ENV = "DRAINCTL_DEPLOYING"


def push_command(remote: str, ref: str, push_cmd: str | None) -> str:
    """The shell command to run: the user's, else ``git push REMOTE REF``."""
    return push_cmd or f"git push {shlex.quote(remote)} {shlex.quote(ref)}"


def last_segment(chunk: str) -> str:
    """What a terminal would show of a line: after the last carriage return, without erase codes."""
    return chunk.rstrip("\r\n").split("\r")[-1].replace("\x1b[K", "")


def run_push(command: str, cwd: Path, on_line: Callable[[str], None], deploy_id: str = "") -> None:
    """Run ``command`` with ``sh -c``; raise PushFailed unless it exits 0.

    ``DEPLOY_ENV`` names the deploy in the command's environment: an installed pre-push hook
    then leaves the push to this deploy instead of draining (and locking) a second time.

    On KeyboardInterrupt the command is killed before the interrupt propagates, so nothing is
    left pushing behind the user's back while the deploy resumes the app.
    """
    import sh

    running = sh.Command("sh")(
        "-c",
        command,
        _cwd=str(cwd),
        _env={**os.environ, DEPLOY_ENV: deploy_id or "1"},
        _out=lambda chunk: on_line(last_segment(chunk)),
        _err_to_out=True,
        _tty_out=False,  # line-by-line output, no progress meters redrawn with \r
        _bg=True,
        _bg_exc=False,
        _ok_code=list(range(256)),
    )
    try:
        running.wait()
    except KeyboardInterrupt:
        running.kill()
        raise
    if running.exit_code != 0:
        raise PushFailed(f"{command!r} exited with {running.exit_code}; nothing was deployed")
