"""The app of the ``heroku`` git remote, as the heroku CLI infers it when no ``--app`` is given.

``heroku git:remote -a myapp`` writes ``https://git.heroku.com/myapp.git``; older setups use
``git@heroku.com:myapp.git``. Anything else (no git, no such remote, another host) is None.
"""

from __future__ import annotations

import re
import subprocess

REMOTE = "heroku"
_HEROKU_URL = re.compile(
    r"(?:https://git\.heroku\.com/|git@heroku\.com:)([a-z0-9][a-z0-9-]*)\.git$"
)


def app_from_heroku_remote(remote: str = REMOTE) -> str | None:
    """The app name in the remote's URL, or None."""
    try:
        done = subprocess.run(
            ["git", "config", "--get", f"remote.{remote}.url"],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return app_from_url(done.stdout.strip()) if done.returncode == 0 else None


def app_from_url(url: str) -> str | None:
    """``myapp`` from a Heroku git URL, else None."""
    found = _HEROKU_URL.match(url)
    return found.group(1) if found else None
