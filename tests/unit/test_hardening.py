"""Values a fuzzer found or could find: far-future expiries, NaN, huge integers (fakeredis)."""

from __future__ import annotations

import fakeredis
import pytest

from drainctl.channel import MAX_REPLY_TTL, REPLY_GRACE, Inbox
from drainctl.errors import ProtocolError
from drainctl.keys import Keys
from drainctl.protocol import Command, Reply, Request


def request(expires_at: float) -> Request:
    return Request(Command.PING, "t", 0.0, expires_at, Keys("app").reply("r1"), id="r1")


@pytest.mark.parametrize("expires_at", [1e308, float("inf"), -1e308])
def test_reply_ttl_is_clamped(expires_at: float) -> None:
    """A reply to a request with an absurd expiry gets a bounded TTL instead of crashing."""
    client = fakeredis.FakeRedis()
    inbox = Inbox(client, Keys("app"), "i1")
    inbox.reply(request(expires_at), Reply("r1", {"instance_id": "i1"}, "running"), now=0.0)
    ttl = client.pttl(Keys("app").reply("r1"))
    assert 0 < ttl <= (MAX_REPLY_TTL + REPLY_GRACE) * 1000
    client.close()


@pytest.mark.parametrize("value", [b"NaN", b"1" + b"0" * 400])
def test_nan_and_huge_integers_are_protocol_errors(value: bytes) -> None:
    """NaN (which Python's json accepts) and numbers too big for a float are rejected cleanly."""
    raw = request(10.0).encode().replace(b'"expires_at":10.0', b'"expires_at":' + value)
    with pytest.raises(ProtocolError, match="not JSON"):
        Request.decode(raw)
