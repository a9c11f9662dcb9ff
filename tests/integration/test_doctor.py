"""`drainctl doctor` against real redis-servers and listeners: a verdict per line, exit 0/1."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from drainctl.config import Settings
from tests.integration.conftest import StartListener
from tests.redis_server import RedisServer, free_port

SECRET = "doctor-secret"


def doctor(
    url: str, app: str, *args: str, secret: str | None = None
) -> tuple[int, dict[str, dict[str, str]], str]:
    """Run ``drainctl --json doctor ARGS``; the exit code, the checks by name, stderr."""
    secret_option = ["--secret", secret] if secret else []
    done = subprocess.run(
        [sys.executable, "-m", "drainctl", "--redis-url", url, "--app", app, "--json",
         *secret_option, "doctor", *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is (done.returncode == 0)
    return done.returncode, {c["check"]: c for c in report["checks"]}, done.stderr


def test_healthy_setup_passes_every_check(settings: Settings, start_listener: StartListener):
    """Signed listeners with release and commit on a noeviction Redis: every line ok, exit 0;
    the table shows the same."""
    start_listener("worker", secrets=(SECRET,), release="v7", commit="abc123")
    code, checks, _ = doctor(settings.redis_url, str(settings.app), secret=SECRET)
    assert code == 0
    assert {name: c["verdict"] for name, c in checks.items()} == {
        "redis": "ok", "commands": "ok", "acl default": "ok", "maxmemory-policy": "ok",
        "tls": "ok", "registry": "ok", "secret": "ok", "clock": "ok", "metadata": "ok",
        "versions": "ok",
    }  # fmt: skip
    assert checks["secret"]["detail"] == "set; all 1 live instance(s) sign with it"
    table = subprocess.run(
        [sys.executable, "-m", "drainctl", "--redis-url", settings.redis_url, "--app",
         str(settings.app), "--secret", SECRET, "doctor"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert table.returncode == 0
    assert "maxmemory-policy  ok" in table.stdout


def test_missing_metadata_and_no_secret_are_warnings(
    settings: Settings, start_listener: StartListener
):
    """An instance without release/commit and a CLI without a secret: warnings, still exit 0."""
    start_listener("worker")
    code, checks, _ = doctor(settings.redis_url, str(settings.app))
    assert code == 0
    assert checks["metadata"]["verdict"] == "warn"
    assert "HEROKU_SLUG_COMMIT" in checks["metadata"]["detail"]
    assert checks["secret"]["verdict"] == "warn"


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_evicting_policy_is_warned_about_by_doctor_and_listener(
    app: str, policy: str, caplog: pytest.LogCaptureFixture
):
    """An evicting maxmemory-policy: a warning line explaining what can vanish and how to fix it
    on Heroku; a listener logs the same once at start-up."""
    from drainctl.listener import ControlListener

    caplog.set_level(logging.WARNING, logger="drainctl")
    server = RedisServer(None, "--maxmemory", "100mb", "--maxmemory-policy", policy).start()
    listener = ControlListener(
        settings=Settings(redis_url=server.url, app=app, process_type="worker", release="v1")
    )
    try:
        listener.start()
        code, checks, _ = doctor(server.url, app)
    finally:
        listener.stop()
        server.cleanup()
    assert code == 0
    eviction = checks["maxmemory-policy"]
    assert eviction["verdict"] == "warn"
    assert f"maxmemory-policy is {policy}" in eviction["detail"]
    assert "fence" in eviction["detail"]
    assert "heroku redis:maxmemory" in eviction["detail"]
    logged = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(logged) == 1
    assert "heroku redis:maxmemory" in logged[0]


def test_restricted_acl_user(settings: Settings, redis_server: RedisServer, restricted_user: str):
    """Run as the restricted user: the registry fails naming ZRANGE, what it may not look at is
    'not checked', exit 1. From an admin URL with --acl-user: the refused commands are named."""
    url = f"redis://{restricted_user}:pw@127.0.0.1:{redis_server.port}/0"
    code, checks, _ = doctor(url, str(settings.app))
    assert code == 1
    assert checks["registry"]["verdict"] == "FAIL"
    assert "may not use the ZRANGE command" in checks["registry"]["detail"]
    assert checks[f"acl {restricted_user}"]["verdict"] == "not checked"
    assert checks["maxmemory-policy"]["verdict"] == "not checked"
    assert checks["redis"]["verdict"] == "not checked"
    code, checks, _ = doctor(settings.redis_url, str(settings.app), "--acl-user", restricted_user)
    assert code == 1
    acl = checks[f"acl {restricted_user}"]
    assert acl["verdict"] == "FAIL"
    assert acl["detail"].startswith("may not run ZRANGE, ZREM, MGET, PTTL, RPUSH")
    code, checks, _ = doctor(settings.redis_url, str(settings.app), "--acl-user", "nosuchuser")
    assert code == 1
    assert checks["acl nosuchuser"] == {
        "check": "acl nosuchuser",
        "verdict": "FAIL",
        "detail": "no ACL user 'nosuchuser' on this Redis",
    }


def test_wrong_secret_fails(settings: Settings, start_listener: StartListener):
    """Listeners signing with another secret: the secret line fails naming them, exit 1."""
    listener = start_listener("worker", secrets=("the-listeners-secret",), release="v1")
    code, checks, _ = doctor(settings.redis_url, str(settings.app), secret=SECRET)
    assert code == 1
    assert checks["secret"]["verdict"] == "FAIL"
    assert listener.identity.instance_id in checks["secret"]["detail"]
    assert "bad signature" in checks["secret"]["detail"]


def test_unreachable_redis_is_one_failed_line(app: str):
    """Nothing listens: one failed line naming the URL, exit 1."""
    code, checks, _ = doctor(f"redis://127.0.0.1:{free_port()}/0", app)
    assert code == 1
    assert list(checks) == ["redis"]
    assert "cannot reach Redis" in checks["redis"]["detail"]
