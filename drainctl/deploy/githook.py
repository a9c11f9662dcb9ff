"""The pre-push hook: drain before ``git push`` to the deploy remote, verify in the background.

``install`` writes ``hooks/pre-push`` (an existing hook is renamed and chained, never
overwritten); ``uninstall`` puts it back. When git runs the hook it gives the remote's name and
URL as arguments and one line per ref on stdin::

    <local ref> <local sha> <remote ref> <remote sha>

Git has no post-push hook, so after a successful drain the hook starts a detached
``drainctl verify`` for the pushed commit, logging to a file in ``.git/``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from drainctl.deploy import gitrepo
from drainctl.errors import ConfigError

ZERO_SHA = "0" * 40
MARK = "# drainctl pre-push hook"
CHAINED = "pre-push.drainctl-chained"
VERIFY_LOG = "drainctl-verify.log"
DEPLOYED_BRANCHES = ("refs/heads/main", "refs/heads/master")


@dataclass(frozen=True)
class RefUpdate:
    """One line of the pre-push hook's stdin."""

    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str


def parse_updates(lines: list[str]) -> list[RefUpdate]:
    """The updates that send something: deletions and already-up-to-date refs are dropped."""
    updates = []
    for line in lines:
        parts = line.split()
        if len(parts) != 4:
            continue
        update = RefUpdate(*parts)
        if update.local_sha in {ZERO_SHA, update.remote_sha}:
            continue
        updates.append(update)
    return updates


def deployed(updates: list[RefUpdate]) -> RefUpdate | None:
    """The update a platform deploys: to main or master, else the first one."""
    for update in updates:
        if update.remote_ref in DEPLOYED_BRANCHES:
            return update
    return updates[0] if updates else None


def pre_commit_lines(environ: Mapping[str, str]) -> list[str]:
    """The stdin line the pre-commit framework does not pass, rebuilt from its variables."""
    to_ref = environ.get("PRE_COMMIT_TO_REF")
    if not to_ref:
        return []
    return [
        " ".join(
            (
                environ.get("PRE_COMMIT_LOCAL_BRANCH") or "HEAD",
                to_ref,
                environ.get("PRE_COMMIT_REMOTE_BRANCH") or "refs/heads/main",
                environ.get("PRE_COMMIT_FROM_REF") or ZERO_SHA,
            )
        )
    ]


def hooks_dir(cwd: Path | None = None) -> Path:
    """Where git looks for hooks (honours ``core.hooksPath``)."""
    path = Path(gitrepo.git("rev-parse", "--git-path", "hooks", cwd=cwd))
    return path if path.is_absolute() else (cwd or Path.cwd()) / path


def install(
    remote: str, global_args: list[str], run_args: list[str], cwd: Path | None = None
) -> str:
    """Write the hook (idempotent); an existing foreign hook is kept and chained."""
    hooks = hooks_dir(cwd)
    hooks.mkdir(parents=True, exist_ok=True)
    hook, chained = hooks / "pre-push", hooks / CHAINED
    note = ""
    if hook.exists() and MARK not in hook.read_text(errors="replace"):
        if chained.exists():
            raise ConfigError(f"{hook} and {chained} both exist: merge them by hand first")
        hook.rename(chained)
        note = f"; the existing hook was kept as {chained.name} and runs first"
    command = [sys.executable, "-m", "drainctl", *global_args, "hook", "run", "--remote", remote]
    command += run_args
    hook.write_text(
        f"#!/bin/sh\n{MARK}: drains the app before a push to {remote}.\n"
        f"# `drainctl hook uninstall` removes it and restores any hook it chained.\n"
        f'exec {shlex.join(command)} "$@"\n'
    )
    hook.chmod(0o755)
    return f"installed {hook}{note}"


def uninstall(cwd: Path | None = None) -> str:
    """Remove our hook and restore the chained one, if any."""
    hooks = hooks_dir(cwd)
    hook, chained = hooks / "pre-push", hooks / CHAINED
    if not hook.exists() or MARK not in hook.read_text(errors="replace"):
        return "no drainctl pre-push hook installed"
    hook.unlink()
    if chained.exists():
        chained.rename(hook)
        return f"removed the drainctl hook; restored the previous {hook}"
    return f"removed {hook}"


def run_chained(args: list[str], stdin: str, cwd: Path | None = None) -> int:
    """Run the hook we replaced, with the same arguments and stdin; its exit code."""
    chained = hooks_dir(cwd) / CHAINED
    if not chained.exists():
        return 0
    return subprocess.run([str(chained), *args], input=stdin, text=True, check=False).returncode


@dataclass(frozen=True)
class VerifyArgs:
    """What the background verify needs, taken by the hook before git pushes."""

    timeout: float
    stable_for: float
    deploy_id: str
    drained: list[str]
    expect: dict[str, int]
    # For the history record the verify appends: the releases drained, the hook's phases.
    from_releases: tuple[str, ...] = ()
    phases_s: dict[str, float] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """As ``drainctl verify`` options."""
        args = ["--verify-timeout", str(self.timeout), "--stable-for", str(self.stable_for)]
        args += ["--deploy-id", self.deploy_id]
        args += [part for instance in self.drained for part in ("--drained", instance)]
        args += [part for kind, n in self.expect.items() for part in ("--expect", f"{kind}={n}")]
        args += [part for kind in self.expect for part in ("--process-type", kind)]
        args += [part for release in self.from_releases for part in ("--from-release", release)]
        args += [part for name, s in self.phases_s.items() for part in ("--phase", f"{name}={s}")]
        return args


def start_verify(
    app: str, redis_url: str, commit: str, verify: VerifyArgs, cwd: Path | None = None
) -> Path:
    """Start ``drainctl verify`` for ``commit`` detached from the hook; returns its log file.

    If the push then fails (git pushes after the hook), no new instance ever shows up: that
    verify lifts the fence and resumes the old release instead of leaving it drained.
    """
    log = gitrepo.git_dir(cwd) / VERIFY_LOG
    command = [sys.executable, "-m", "drainctl", "--app", app, "verify", "--commit", commit]
    with log.open("a") as out:
        subprocess.Popen(
            [*command, *verify.argv(), "--resume-if-not-deployed"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            env={**os.environ, "DRAINCTL_REDIS_URL": redis_url, "NO_COLOR": "1"},
        )
    return log
