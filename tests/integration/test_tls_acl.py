"""``rediss://`` against a real TLS redis-server, and the minimal ACL from the README."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.errors import RedisUnavailable
from drainctl.listener import ControlListener
from drainctl.protocol import Command
from tests.conftest import assert_no_lasting_keys
from tests.readme_blocks import minimal_acl
from tests.tls_server import TlsRedisServer

SECRET = "tls-test-shared-secret"
UNVERIFIED = "verification is off"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsRedisServer]:
    server = TlsRedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def tls_settings(tls_server: TlsRedisServer, app: str) -> Iterator[Settings]:
    yield Settings(
        redis_url=tls_server.tls_url(),
        app=app,
        heartbeat_interval=0.5,
        block_timeout=2.0,
        ssl_ca_certs=str(tls_server.ca),
        secrets=(SECRET,),
    )
    assert_no_lasting_keys(tls_server.url, app)


def drainctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "drainctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ping_through(settings: Settings) -> None:
    listener = ControlListener(settings=settings.replace(process_type="worker")).start()
    try:
        outcome = ControlClient(settings).send(Command.PING, timeout=5)
        assert outcome.ok, outcome
    finally:
        listener.stop()


def test_rediss_with_ca_file_is_verified(
    tls_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """With the CA file given, the certificate is verified and nothing warns."""
    ping_through(tls_settings)
    assert UNVERIFIED not in caplog.text


def test_ssl_cert_reqs_none_in_the_url_works_and_warns(
    tls_server: TlsRedisServer, tls_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Heroku's ``?ssl_cert_reqs=none`` connects to a self-signed server, with a warning."""
    url = tls_server.tls_url(query="ssl_cert_reqs=none")
    ping_through(Settings(redis_url=url, app=tls_settings.app, heartbeat_interval=0.5))
    assert UNVERIFIED in caplog.text


def test_ssl_cert_reqs_none_as_cli_option_works_and_warns(
    tls_server: TlsRedisServer, tls_settings: Settings
) -> None:
    """``--ssl-cert-reqs none`` reaches a self-signed server; the CLI says verification is off."""
    listener = ControlListener(settings=tls_settings.replace(process_type="clock")).start()
    try:
        result = drainctl(
            "--redis-url", tls_server.tls_url(), "--app", tls_settings.require_app(),
            "--secret", SECRET, "--ssl-cert-reqs", "none", "ping",
        )  # fmt: skip
    finally:
        listener.stop()
    assert result.returncode == 0, result.stderr
    assert UNVERIFIED in result.stderr
    assert listener.identity.instance_id in result.stdout


def test_unknown_certificate_is_refused_by_default(
    tls_server: TlsRedisServer, tls_settings: Settings
) -> None:
    """Without a CA file or ssl_cert_reqs=none, a self-signed server is refused: exit 6, masked."""
    url = tls_server.tls_url("someone:pa55word")
    with pytest.raises(RedisUnavailable, match="certificate verify failed"):
        ControlClient(Settings(redis_url=url, app="x")).live()
    result = drainctl("--redis-url", url, "--app", "x", "status")
    assert result.returncode == 6
    assert "rediss://someone:***@127.0.0.1" in result.stderr
    assert "pa55word" not in result.stderr


def test_readme_minimal_acl_is_enough(
    tls_server: TlsRedisServer, tls_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """With exactly the README's ACL users over rediss://, a listener and every CLI command work.

    Redis' ACL log stays empty (no command or key was denied), and no password or secret shows
    up in any output or log.
    """
    caplog.set_level(logging.DEBUG, logger="drainctl")
    admin = redis.Redis(port=tls_server.port)
    admin.execute_command("ACL LOG RESET")
    passwords = {"drainctl-listener": "Lpw-9f8e7d", "drainctl-cli": "Cpw-1a2b3c"}
    for line in minimal_acl():
        user = line.split()[2]
        admin.execute_command(re.sub(r">\S+", f">{passwords[user]}", line))
    listener_url = tls_server.tls_url(f"drainctl-listener:{passwords['drainctl-listener']}")
    cli_url = tls_server.tls_url(f"drainctl-cli:{passwords['drainctl-cli']}")
    listener = ControlListener(
        settings=tls_settings.replace(redis_url=listener_url, process_type="worker")
    ).start()
    outputs = []
    try:
        # An index entry whose heartbeat is gone: reading the registry prunes it (ZREM).
        admin.zadd(f"drainctl:{{{tls_settings.require_app()}}}:instances", {"gone": 0})
        base = ["--redis-url", cli_url, "--app", tls_settings.require_app(), "--json"]
        base += ["--ssl-ca-certs", str(tls_server.ca), "--secret", SECRET]
        for command in (["status"], ["ping"], ["drain", "--deadline", "1"], ["resume"]):
            result = drainctl(*base, *command)
            assert result.returncode == 0, result.stderr
            outputs += [result.stdout, result.stderr]
        assert json.loads(outputs[0])[0]["instance_id"] == listener.identity.instance_id
        # The README's own doctor line for that user (from an admin URL): what status, ping,
        # drain and resume send passes; what deploy adds is named, as a warning.
        admin_url = f"redis://127.0.0.1:{tls_server.port}/0"
        checked = drainctl("--redis-url", admin_url, *base[2:4], "--secret", SECRET, "--json",
                           "doctor", "--acl-user", "drainctl-cli")  # fmt: skip
        checks = {c["check"]: c for c in json.loads(checked.stdout)["checks"]}
        acl = checks["acl drainctl-cli"]
        assert acl["verdict"] == "warn", checked.stdout
        assert acl["detail"].startswith("may run status, ping, drain and resume; not deploy")
        assert checked.returncode == 0, checked.stdout
    finally:
        listener.stop()
    assert admin.execute_command("ACL LOG") == []
    assert admin.zscore(f"drainctl:{{{tls_settings.require_app()}}}:instances", "gone") is None
    for text in [*outputs, caplog.text]:
        for secret in [*passwords.values(), SECRET]:
            assert secret not in text
    for user in passwords:
        admin.execute_command("ACL DELUSER", user)
    admin.close()
