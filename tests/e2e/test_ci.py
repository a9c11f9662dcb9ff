"""`drainctl deploy` as CI runs it: no terminal, no stdin, one JSON summary on stdout."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.heroku import LocalHeroku


def test_deploy_without_a_terminal_prints_only_the_summary_on_stdout(heroku: LocalHeroku) -> None:
    """No TTY and stdin closed (a CI job): nothing is asked, progress goes to stderr as plain
    lines, stdout is exactly one JSON line, and the exit code is the summary's."""
    commit = heroku.commit("v2")
    done = subprocess.run(
        [sys.executable, "-m", "drainctl", "--app", heroku.app, "deploy", "--json",
         "--remote", "heroku", "--drain-deadline", "3", "--ack-timeout", "4",
         "--stable-for", "1", "--zombie-grace", "4", "--verify-timeout", "25"],
        cwd=heroku.src, env={**heroku.env, "CI": "true"}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    (line,) = done.stdout.splitlines()
    summary = json.loads(line)
    assert done.returncode == summary["exit_code"] == 0, done.stderr
    assert (summary["verdict"], summary["commit"]) == ("ok", commit)
    for phase in ("plan", "drain", "push", "verify", "done"):
        assert f"== {phase}: " in done.stderr
    assert "\x1b[" not in done.stderr  # no live table redrawn in place
