"""Hostile and heavy traffic against one listener in a real subprocess over a real redis-server."""

from __future__ import annotations

import functools
import json
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.connection import ServerClock
from drainctl.keys import Keys
from drainctl.protocol import Command, Request
from drainctl.signing import Signer
from tests.host_app import HostProcess
from tests.polling import wait_for
from tests.redis_server import RedisServer
from tests.soak import soak

pytestmark = pytest.mark.slow

SECRET = "fuzz-secret-0123456789"
FUZZ_COUNT = 10_000
WARMUP = 2_000
_MB = 1024 * 1024


class Fuzzer:
    """Random control messages, nearly all of which a listener must refuse without harm."""

    def __init__(self, rng: random.Random, app: str, now: float) -> None:
        self.rng = rng
        self.keys = Keys(app)
        self.now = now
        self.signer = Signer([SECRET])
        # One validly signed ping, pushed again and again: only its first copy may be answered.
        self.replayed = self.request()
        self.replayed_raw = self.sign(self.replayed)
        self.kinds: list[Callable[[], bytes]] = [
            lambda: self.rng.randbytes(self.rng.randint(0, 300)),
            lambda: self.valid()[: self.rng.randint(1, 150)],
            lambda: self.rng.choice([b"[]", b"1", b'"x"', b"null", b"true", b"[{}]", b""]),
            lambda: self.mutated(resign=False),
            lambda: self.mutated(resign=True),
            lambda: self.sign(self.request(sender="x" * self.rng.choice([1000, 60_000, 70_000]))),
            lambda: b"[" * 30_000 + b"]" * 30_000,
            lambda: b'{"v":1,"command":"ping","sent_at":NaN,"ts":Infinity,"sig":"00"}',
            lambda: self.valid(Signer(["wrong-secret"])),
            lambda: self.valid().replace(b'"sig":"', b'"sig":"0', 1),
            lambda: json.dumps(self.request()).encode(),
            lambda: self.sign(self.request(), now=self.now - 3600),
            lambda: self.sign(self.request(to={"instance": "someone-else", "types": None})),
            lambda: self.sign(self.request(to={"instance": None, "types": ["clock"]})),
            lambda: self.sign(self.request(reply_to="elsewhere:reply:1")),
            lambda: self.sign(self.request(command="selfdestruct")),
            lambda: self.sign(self.request(command="drain", args={"deadline": "soon"})),
            lambda: self.sign(self.request(command="drain", args={"deadline": -1})),
            lambda: self.sign(self.request(v=2)),
            lambda: self.replayed_raw,
        ]

    def request(self, **fields: Any) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        body = Request(
            command=Command.PING,
            sender="fuzz",
            sent_at=self.now,
            expires_at=self.now + 20,
            reply_to=self.keys.reply(request_id),
            id=request_id,
        )
        return json.loads(body.encode()) | fields

    def sign(self, body: dict[str, Any], *, now: float | None = None) -> bytes:
        signed = self.signer.sign(body, "request", self.now if now is None else now)
        return json.dumps(signed).encode()

    def valid(self, signer: Signer | None = None) -> bytes:
        body = (signer or self.signer).sign(self.request(), "request", self.now)
        return json.dumps(body).encode()

    def mutated(self, *, resign: bool) -> bytes:
        body = self.request()
        junk = [None, True, -1, 1e308, 10**400, "", "x" * 500, [], {"a": [1]}, [[[]]]]
        body[self.rng.choice(list(body))] = self.rng.choice(junk)
        if resign:
            return self.sign(body)
        return json.dumps(self.signer.sign(self.request(), "request", self.now) | body)

    def batch(self, n: int) -> list[bytes]:
        return [self.rng.choice(self.kinds)() for _ in range(n)]


@pytest.fixture
def listener_host(
    redis_server: RedisServer, settings: Settings, tmp_path: Path
) -> Iterator[HostProcess]:
    host = HostProcess(
        redis_server.url,
        settings.require_app(),
        tmp_path / "journal",
        secret=SECRET,
        log=tmp_path / "log",
    )
    yield host
    host.stop()


def push(client: redis.Redis, inbox: str, messages: list[bytes]) -> None:
    for start in range(0, len(messages), 500):
        pipe = client.pipeline(transaction=False)
        pipe.rpush(inbox, *messages[start : start + 500])
        pipe.pexpire(inbox, 120_000)
        pipe.execute()


def test_fuzzed_inbox_listener_survives_and_stays_flat(
    settings: Settings,
    redis_client: redis.Redis,
    listener_host: HostProcess,
    tmp_path: Path,
) -> None:
    """10,000 random messages (garbage bytes, bad JSON, wrong types, huge and deep fields, bad
    and missing signatures, stale timestamps, wrong recipients, replays) pushed into an inbox:
    the listener stays up, answers a valid ping after, grows < 2 MB, answers the replayed
    request exactly once, and never logs the secret."""
    clock = ServerClock()
    clock.sync(redis_client)
    fuzzer = Fuzzer(random.Random(6), settings.require_app(), clock.now())
    inbox = Keys(settings.require_app()).inbox(listener_host.instance_id)
    control = ControlClient(settings.replace(secrets=(SECRET,)), client=redis_client)
    ping = functools.partial(control.send, Command.PING, timeout=10)

    push(redis_client, inbox, fuzzer.batch(WARMUP))
    assert ping().ok
    rss_start = listener_host.rss()
    push(redis_client, inbox, fuzzer.batch(FUZZ_COUNT - WARMUP))
    wait_for(lambda: redis_client.llen(inbox) == 0, 60, "the listener to read every message")
    assert ping().ok
    growth_mb = (listener_host.rss() - rss_start) / _MB

    assert listener_host.process.poll() is None
    assert growth_mb < 2.0, f"listener grew {growth_mb:.2f} MB"
    assert redis_client.llen(fuzzer.replayed["reply_to"]) == 1
    log = (tmp_path / "log").read_text()
    assert log.count("rejected a control message") > FUZZ_COUNT // 2
    assert "replayed nonce" in log
    assert SECRET not in log
    print(f"fuzz: {FUZZ_COUNT} messages, listener RSS growth {growth_mb:.3f} MB")


def test_soak_pings_keep_memory_and_keys_flat(redis_server: RedisServer, app: str) -> None:
    """10,000 signed pings (after 1,000 of warm-up) to one listener subprocess: none fails,
    resident memory grows < 2 MB, and the app's key count returns to where it started."""
    figures = soak(redis_server.url, app, 10_000)
    print(f"soak: {figures}")
    assert figures["failures"] == 0
    assert figures["rss_growth_mb"] < 2.0
    assert figures["keys_at_end"] == figures["keys_at_start"]
