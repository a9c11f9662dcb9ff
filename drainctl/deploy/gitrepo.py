"""The few git questions a deploy asks, each failure a ConfigError (exit 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from drainctl.errors import ConfigError


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git and return its stripped stdout; raises ConfigError with git's message."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run git: {exc}") from exc
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise ConfigError(f"git {' '.join(args)}: {reason[0]}")
    return done.stdout.strip()


def toplevel(cwd: Path | None = None) -> Path:
    """The work tree's root; ConfigError outside a git work tree."""
    try:
        return Path(git("rev-parse", "--show-toplevel", cwd=cwd))
    except ConfigError:
        raise ConfigError(f"not inside a git work tree: {cwd or Path.cwd()}") from None


def check_remote(remote: str, cwd: Path | None = None) -> str:
    """The remote's URL; ConfigError when no such remote is configured."""
    try:
        return git("remote", "get-url", remote, cwd=cwd)
    except ConfigError:
        raise ConfigError(f"unknown git remote {remote!r} (see `git remote -v`)") from None


def resolve(ref: str, cwd: Path | None = None) -> str:
    """The commit a push ref's local side (``HEAD`` in ``HEAD:main``) points to."""
    local = ref.split(":", 1)[0].lstrip("+") or "HEAD"
    try:
        return git("rev-parse", "--verify", f"{local}^{{commit}}", cwd=cwd)
    except ConfigError:
        raise ConfigError(f"{local!r} is not a commit in this repository") from None


def git_dir(cwd: Path | None = None) -> Path:
    """The repository's .git directory (absolute)."""
    return Path(git("rev-parse", "--absolute-git-dir", cwd=cwd))


def remote_ref(ref: str) -> str:
    """The remote side of a push ref as a full ref name (``HEAD:main`` -> ``refs/heads/main``)."""
    _, _, remote = ref.lstrip("+").rpartition(":")
    remote = remote or "main"
    return remote if remote.startswith("refs/") else f"refs/heads/{remote}"


def remote_head(remote: str, ref: str, cwd: Path | None = None) -> str | None:
    """The commit the remote's branch points to now (``git ls-remote``); None for a new branch."""
    if ref.lstrip("+") == "HEAD":  # `git push heroku HEAD`: the current branch's name
        ref = git("rev-parse", "--abbrev-ref", "HEAD", cwd=cwd)
    out = git("ls-remote", remote, remote_ref(ref), cwd=cwd)
    return out.split()[0] if out else None
