"""The release phase, as Heroku runs it: the Procfile's ``release:`` command, once per push.

It runs after the push is received and the release checked out, before the supervisor switches
releases, in the new release's directory with the new release's environment (``DYNO=release.1``,
``HEROKU_RELEASE_VERSION``, ``HEROKU_SLUG_COMMIT``, the config vars), its output relayed to the
pusher. A non-zero exit rejects the release: nothing is switched and the old release keeps
running. ``release`` is never started as a process of the formation.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TextIO

from drainctl.deploy.plan import read_procfile
from drainctl.localplatform.layout import Layout, Release

RELEASE_TYPE = "release"


def run_release_phase(layout: Layout, release: Release, out: TextIO) -> int:
    """Run the new release's ``release:`` command, if it has one; its exit code (0 without)."""
    command = read_procfile(Path(release.path) / "Procfile").get(RELEASE_TYPE)
    if command is None:
        return 0
    out.write(f"-----> Running release command for {release.name}: {command}\n")
    out.flush()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=release.path,
        env=release_env(layout, release),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        out.write(f"       {line}")
        out.flush()
    return proc.wait()


def release_env(layout: Layout, release: Release) -> dict[str, str]:
    """What a release dyno sees: the platform's config and the new release's metadata.

    The hook runs inside the pusher's ``git push`` (a local remote), so the pusher's own git and
    drainctl variables are dropped: on Heroku the release dyno never sees them.
    """
    config = layout.config()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DRAINCTL_"))}
    return {
        **inherited,
        **config.env,
        "PATH": f"{Path(config.python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DYNO": f"{RELEASE_TYPE}.1",
        "HEROKU_APP_NAME": config.app,
        "HEROKU_RELEASE_VERSION": release.name,
        "HEROKU_SLUG_COMMIT": release.commit,
        "REDIS_URL": config.redis_url,
        "PYTHONUNBUFFERED": "1",
    }
