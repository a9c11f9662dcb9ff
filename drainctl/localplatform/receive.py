"""Creating a platform, and its git hooks: pre-receive (the reject fault) and post-receive."""

from __future__ import annotations

import io
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from drainctl.localplatform.layout import (
    ZERO_SHA,
    Layout,
    PlatformConfig,
    Release,
    config_dict,
    write_json,
)
from drainctl.localplatform.release_phase import run_release_phase

DEPLOYED_BRANCHES = ("refs/heads/main", "refs/heads/master")
LAUNCH_TIMEOUT = 30.0
_HOOK = """#!/bin/sh
# Installed by drainctl.localplatform: a local, Heroku-like platform for demos and tests.
exec '{python}' -m drainctl.localplatform {command} '{root}'
"""


def create(layout: Layout, config: PlatformConfig) -> None:
    """Make the directories, the bare repository with its hooks, and the settings file."""
    for path in (layout.root, layout.releases, layout.logs):
        path.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", "--initial-branch=main", str(layout.repo))
    python = config.python or sys.executable
    for hook, command in (("pre-receive", "pre-receive"), ("post-receive", "receive")):
        path = layout.repo / "hooks" / hook
        path.write_text(_HOOK.format(python=python, command=command, root=layout.root.resolve()))
        path.chmod(0o755)
    write_json(layout.config_file, config_dict(replace(config, python=python)))


def pre_receive(layout: Layout, out: TextIO) -> int:
    """Refuse the push when a ``reject`` fault is set (once)."""
    if layout.take_faults("reject"):
        out.write("rejected by the platform (injected fault)\n")
        return 1
    return 0


def post_receive(layout: Layout, lines: list[str], out: TextIO) -> int:
    """Make release vN from the pushed commit and wait until the supervisor launched it."""
    commit = _deployed_commit(lines)
    if commit is None:
        out.write("nothing to release (only main or master is deployed)\n")
        return 0
    current = layout.release()
    release = Release(
        version=(current.version if current else 0) + 1,
        commit=commit,
        path=str(layout.releases / f"v{(current.version if current else 0) + 1}"),
    )
    _check_out(commit, Path(release.path))
    code = run_release_phase(layout, release, out)
    if code != 0:
        out.write(f"-----> release phase failed (exit {code}): {release.name} not deployed\n")
        return 1
    write_json(layout.release_file, release.__dict__)
    out.write(f"-----> Released {release.name} ({commit[:7]}); launching...\n")
    out.flush()
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while layout.launched() < release.version:
        if time.monotonic() > deadline or not layout.pid_file.exists():
            out.write("-----> the platform supervisor is not running; release recorded\n")
            return 0
        time.sleep(0.05)
    out.write(f"-----> {release.name} is up\n")
    return 0


def _deployed_commit(lines: list[str]) -> str | None:
    commit = None
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] in DEPLOYED_BRANCHES and parts[1] != ZERO_SHA:
            commit = parts[1]
    return commit


def git(*args: str) -> bytes:
    """Run git through ``sh``, as drainctl runs the push; its output, or ErrorReturnCode."""
    import sh

    stdout: bytes = sh.Command("git")(*args, _tty_out=False, _return_cmd=True).stdout
    return stdout


def _check_out(commit: str, dest: Path) -> None:
    # git archive needs no work tree; the hook runs with GIT_DIR set to the bare repository.
    tar = git("archive", "--format=tar", commit)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="data")
        else:  # Python < 3.11.4: the archive comes from our own repository
            archive.extractall(dest)  # noqa: S202
