"""``drainctl rq-worker``: bad input and an unreachable Redis fail with one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.redis_server import free_port


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--app", "x", "--redis-url", "redis://127.0.0.1:{port}/0"], 6, "cannot reach Redis"),
        (["--redis-url", "redis://127.0.0.1:{port}/0"], 2, "no app given"),
    ],
)
def test_rq_worker_errors_are_one_line(args: list[str], code: int, message: str):
    """The worker command maps configuration and connection errors to their exit codes."""
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "drainctl", *[a.format(port=port) for a in args], "rq-worker", "q"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
