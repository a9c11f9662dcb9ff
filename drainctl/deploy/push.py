"""Run the push (``git push REMOTE REF`` or ``--push-cmd``) through ``sh``, streaming its output."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from drainctl.errors import PushFailed


def push_command(remote: str, ref: str, push_cmd: str | None) -> str:
    """The shell command to run: the user's, else ``git push REMOTE REF``."""
    return push_cmd or f"git push {shlex.quote(remote)} {shlex.quote(ref)}"


def run_push(command: str, cwd: Path, on_line: Callable[[str], None]) -> None:
    """Run ``command`` with ``sh -c``; raise PushFailed unless it exits 0.

    On KeyboardInterrupt the command is killed before the interrupt propagates, so nothing is
    left pushing behind the user's back while the deploy resumes the app.
    """
    import sh

    running = sh.Command("sh")(
        "-c",
        command,
        _cwd=str(cwd),
        _out=on_line,
        _err_to_out=True,
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
