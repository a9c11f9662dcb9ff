"""Every Python and shell block of the README runs as written against the private Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from drainctl.keys import Keys
from tests.polling import wait_for
from tests.readme_blocks import README, Block, blocks, minimal_acl, runnable
from tests.redis_server import RedisServer

# The quick start worker's queue: the README's own name, outside the app namespace.
QUICK_START_QUEUE = "myapp:jobs"


def test_markers_are_recognised() -> None:
    """A marker with a typo fails instead of silently running (or skipping) its block."""
    with pytest.raises(ValueError, match="unrecognised run marker"):
        blocks("<!-- not-run: typo -->\n```sh\ntrue\n```\n")
    parsed = blocks("<!-- not run: needs Heroku -->\n```sh\nheroku apps\n```\n```python\n1\n```\n")
    assert [(b.mode, b.reason) for b in parsed] == [("not run", "needs Heroku"), ("run", "")]


def test_every_block_that_cannot_run_says_why() -> None:
    """Most blocks run; the rest each carry a reason, and the quick start worker really runs."""
    marked = runnable(README.read_text())
    assert all(b.reason for b in marked if b.mode == "not run")
    assert [b for b in marked if b.mode == "run in background"]
    assert len([b for b in marked if b.mode == "run"]) >= 3


def _env(redis_server: RedisServer, app: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRAINCTL_", "HEROKU_"))}
    bin_dir = str(Path(sys.executable).parent)
    return {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "REDIS_URL": redis_server.url,
        # What the README's `export DRAINCTL_REDIS_URL=... DRAINCTL_APP=...` block sets.
        "DRAINCTL_REDIS_URL": redis_server.url,
        "DRAINCTL_APP": app,
        "DYNO": "worker.1",
        "DRAINCTL_HEARTBEAT_INTERVAL": "0.5",
        "DRAINCTL_ALLOW_UNSIGNED": "1",
    }


def _command(block: Block, tmp_path: Path) -> list[str]:
    script = tmp_path / f"block_{block.line}.{'py' if block.language == 'python' else 'sh'}"
    script.write_text(block.code)
    if block.language == "python":
        return [sys.executable, str(script)]
    return ["bash", "-euo", "pipefail", str(script)]


def _live_instances(client: redis.Redis, app: str) -> int:
    return int(client.zcard(Keys(app).instances))


def test_readme_blocks_run(
    redis_server: RedisServer, redis_client: redis.Redis, app: str, tmp_path: Path
) -> None:
    """Blocks run in README order; background ones serve the later blocks, then exit 0 on
    SIGTERM; the quick start worker has processed the job the producer block pushed."""
    env = _env(redis_server, app)
    background: list[tuple[Block, subprocess.Popen[bytes], Path]] = []
    # The ACL users the README tells readers to create: its doctor line checks one of them.
    users = [line.split()[2] for line in minimal_acl()]
    for line in minimal_acl():
        redis_client.execute_command(*line.split())
    try:
        for block in runnable(README.read_text()):
            if block.mode == "not run":
                continue
            if block.mode == "run in background":
                out = tmp_path / f"block_{block.line}.out"
                with out.open("wb") as sink:
                    proc = subprocess.Popen(
                        _command(block, tmp_path), env=env, cwd=tmp_path, stdout=sink
                    )
                background.append((block, proc, out))
                wait_for(lambda: _live_instances(redis_client, app), what="the worker's beat")
                continue
            done = subprocess.run(
                _command(block, tmp_path),
                env=env,
                cwd=tmp_path,
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, f"README line {block.line}: {done.stderr.decode()}"
        quick_start_out = background[0][2]
        wait_for(lambda: b"processed 1" in quick_start_out.read_bytes(), what="the job run")
        for block, proc, _out in background:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, f"README line {block.line} did not exit 0"
    finally:
        for _block, proc, _out in background:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for key in redis_client.scan_iter(match=f"{QUICK_START_QUEUE}*"):
            redis_client.delete(key)
        redis_client.execute_command("ACL", "DELUSER", *users)
