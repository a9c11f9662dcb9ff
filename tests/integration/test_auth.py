"""Signed control messages between real listeners and requesters over a real redis-server."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from drainctl.channel import ControlClient, Target
from drainctl.config import Settings
from drainctl.connection import ServerClock
from drainctl.keys import Keys
from drainctl.listener import ControlListener
from drainctl.protocol import Command, Reply, Request
from drainctl.signing import Signer
from tests.polling import wait_for

SECRET = "correct-horse-battery-staple"


@pytest.fixture
def listener(settings: Settings) -> Iterator[ControlListener]:
    started = ControlListener(settings=settings.replace(process_type="worker"), secret=SECRET)
    yield started.start()
    started.stop()


def signed_request(
    settings: Settings, client: redis.Redis, command: Command = Command.PING, **args: object
) -> bytes:
    """A validly signed request (a ping by default) to the whole app, as the CLI would send it."""
    clock = ServerClock()
    clock.sync(client)
    now = clock.now()
    request_id = uuid.uuid4().hex
    request = Request(
        command=command,
        sender="test",
        args=dict(args),
        sent_at=now,
        expires_at=now + 10,
        reply_to=Keys(settings.require_app()).reply(request_id),
        id=request_id,
    )
    return request.encode(functools.partial(Signer([SECRET]).sign, now=now))


def test_signed_ping_is_answered_and_reply_verified(
    settings: Settings, listener: ControlListener
) -> None:
    """With the same secret on both sides, requests and replies pass verification."""
    outcome = ControlClient(settings.replace(secrets=(SECRET,))).send(Command.PING, timeout=5)
    assert outcome.ok
    assert [r.instance_id for r in outcome.replies] == [listener.identity.instance_id]


def test_rotation_old_secret_still_accepted(settings: Settings, listener: ControlListener) -> None:
    """Mid-rotation, a listener on ``old,new`` talks to requesters on ``old`` and on ``new,old``."""
    rotated = ControlListener(
        settings=settings.replace(process_type="clock"), secret=f"{SECRET},next-secret"
    ).start()
    try:
        clock = Target(process_types=frozenset({"clock"}))
        for secrets in [(SECRET,), ("next-secret", SECRET)]:
            client = ControlClient(settings.replace(secrets=secrets))
            assert client.send(Command.PING, target=clock).ok
    finally:
        rotated.stop()


@pytest.mark.parametrize("secrets", [(), ("wrong-secret",)])
def test_unsigned_or_wrongly_signed_requests_are_refused_and_logged(
    settings: Settings,
    listener: ControlListener,
    caplog: pytest.LogCaptureFixture,
    secrets: tuple[str, ...],
) -> None:
    """Unsigned or wrongly signed drains are not executed; each rejection is logged, no secret.

    A requester without a secret waits for the listener in vain; one with the wrong secret
    cannot verify its heartbeat either, so it reports it as unverified and does not wait.
    """
    caplog.set_level(logging.WARNING, logger="drainctl")
    outcome = ControlClient(settings.replace(secrets=secrets)).send(
        Command.DRAIN, args={"deadline": 0}, timeout=1
    )
    ids = [listener.identity.instance_id]
    assert [r.instance_id for r in outcome.missing] == ([] if secrets else ids)
    assert [r.instance_id for r in outcome.unverified] == (ids if secrets else [])
    rejections = wait_for(
        lambda: [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()],
        what="the rejection logged",
    )
    assert listener.state.value == "running"
    assert "unsigned" in rejections[0] or "bad signature" in rejections[0]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_requester_refuses_unsigned_replies(settings: Settings) -> None:
    """A requester with a secret ignores replies from a listener that signs nothing, and does
    not wait for them: its unsigned heartbeat makes it unverified."""
    plain = ControlListener(settings=settings.replace(process_type="web")).start()
    try:
        outcome = ControlClient(settings.replace(secrets=(SECRET,))).send(Command.PING, timeout=1)
        assert not outcome.replies
        assert not outcome.missing
        assert [r.instance_id for r in outcome.unverified] == [plain.identity.instance_id]
    finally:
        plain.stop()


def test_replayed_request_is_executed_once(
    settings: Settings, listener: ControlListener, redis_client: redis.Redis
) -> None:
    """The same signed request pushed twice gets one reply; the replay is refused."""
    raw = signed_request(settings, redis_client)
    inbox = Keys(listener.identity.app).inbox(listener.identity.instance_id)
    redis_client.rpush(inbox, raw, raw)
    redis_client.pexpire(inbox, 10_000)
    reply_to = Request.decode(raw).reply_to
    # The listener serves its inbox in order: once a later ping is answered, both copies were seen.
    assert ControlClient(settings.replace(secrets=(SECRET,))).send(Command.PING, timeout=5).ok
    replies = redis_client.lrange(reply_to, 0, -1)
    assert len(replies) == 1
    Reply.decode(replies[0], functools.partial(Signer([SECRET]).verify, now=time.time()))
    redis_client.delete(reply_to)


def test_app_wide_request_is_not_replayed_into_a_later_instance(
    settings: Settings,
    listener: ControlListener,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app-wide signed drain copied into the inbox of an instance started after it was signed
    is refused there (logged, no reply); the instance that existed when it was signed runs it."""
    caplog.set_level(logging.WARNING, logger="drainctl")
    raw = signed_request(settings, redis_client, Command.DRAIN, deadline=0)
    request = Request.decode(raw)
    clock = ServerClock()
    clock.sync(redis_client)
    wait_for(lambda: clock.now() > request.sent_at + 0.05, what="the clock to pass the signature")
    later = ControlListener(settings=settings.replace(process_type="worker"), secret=SECRET)
    later.start()
    try:
        for instance in (listener, later):
            inbox = Keys(instance.identity.app).inbox(instance.identity.instance_id)
            redis_client.rpush(inbox, raw)
            redis_client.pexpire(inbox, 10_000)
        refusal = wait_for(
            lambda: [r.getMessage() for r in caplog.records if "before this" in r.getMessage()],
            what="the later instance's refusal",
        )
        raws = wait_for(lambda: redis_client.lrange(request.reply_to, 0, -1), what="a reply")
        assert [Reply.decode(r).instance_id for r in raws] == [listener.identity.instance_id]
        assert listener.state.value == "drained"
        assert later.state.value == "running"
        assert "rejected a control message: signed" in refusal[0]
    finally:
        later.stop()
        redis_client.delete(request.reply_to)


def test_cli_warns_once_without_secret(settings: Settings, listener: ControlListener) -> None:
    """Without a secret the CLI still works but warns, once, that messages are unauthenticated."""
    from click.testing import CliRunner

    from drainctl.cli import main

    result = CliRunner().invoke(
        main, ["--redis-url", settings.redis_url, "--app", settings.require_app(), "status"]
    )
    assert result.exit_code == 0
    assert result.stderr.count("unauthenticated") == 1


def test_a_cli_with_another_secret_than_the_listeners_fails_instead_of_draining_no_one(
    settings: Settings, listener: ControlListener
) -> None:
    """Every matching entry fails the signature check: exit 2 naming the likely cause, not
    "no live instances matched" and exit 0, which let `drainctl drain && git push` push."""
    base = [sys.executable, "-m", "drainctl", "--redis-url", settings.redis_url]
    base += ["--app", settings.require_app(), "--secret", "another-secret"]
    prefix = listener.identity.instance_id[:4]
    for command, extra in (
        ("drain", []),
        ("ping", ["--json", "--instance", prefix]),
        ("resume", []),
    ):
        argv = [*base, command, *extra]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done
        assert f"drainctl: {command}: 1 matching entry ignored, not signed with this secret" in (
            done.stderr
        )
        assert "Traceback" not in done.stderr
    assert listener.state.value == "running"
