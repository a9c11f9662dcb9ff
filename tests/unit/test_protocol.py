"""Encoding and validation of control messages."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from drainctl.errors import ProtocolError
from drainctl.protocol import PROTOCOL_VERSION, Command, Reply, Request

finite = st.floats(allow_nan=False, allow_infinity=False)
# JSON numbers are read as 64-bit integers or floats (see test_huge_integers_arrive_as_floats).
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
args = st.dictionaries(st.text(max_size=8), int64 | st.text(max_size=8), max_size=3)


@given(
    command=st.sampled_from(Command),
    sender=st.text(max_size=30),
    sent_at=finite,
    ttl=finite,
    reply_to=st.text(max_size=40),
    args=args,
)
def test_request_round_trip(
    command: Command,
    sender: str,
    sent_at: float,
    ttl: float,
    reply_to: str,
    args: dict[str, object],
):
    """Any request with finite times decodes to an equal request."""
    assume(math.isfinite(sent_at + ttl))
    request = Request(command, sender, sent_at, sent_at + ttl, reply_to, args)
    assert Request.decode(request.encode()) == request


@given(ok=st.booleans(), error=st.none() | st.text(max_size=20), data=args)
def test_reply_round_trip(ok: bool, error: str | None, data: dict[str, object]):
    """Any reply decodes to an equal reply."""
    reply = Reply("r1", {"instance_id": "abc"}, "running", ok, dict(data), error)
    assert Reply.decode(reply.encode()) == reply


def test_huge_integers_arrive_as_floats():
    """Integers beyond 64 bits are written (by the standard library) and read back as floats."""
    request = Request(Command.DRAIN, "cli", 1.0, 2.0, "drainctl:a:reply:x", {"deadline": 2**70})
    assert Request.decode(request.encode()).args == {"deadline": float(2**70)}


def test_nesting_too_deep_for_orjson_still_encodes():
    """A handler's deeply nested data still makes a reply (orjson stops at 254 levels)."""
    data: dict[str, object] = {}
    for _ in range(300):
        data = {"d": data}
    reply = Reply("r1", {"instance_id": "abc"}, "running", data=data)
    assert json.loads(reply.encode())["data"] == data


def valid() -> dict[str, object]:
    return json.loads(Request(Command.PING, "cli", 1.0, 2.0, "drainctl:a:reply:x").encode())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": PROTOCOL_VERSION + 1}, "unsupported protocol version"),
        ({"command": "nuke"}, "unknown command"),
        ({"sent_at": True}, "'sent_at' must be a number"),
        ({"expires_at": "soon"}, "'expires_at' must be a number"),
        ({"args": []}, "'args' must be dict"),
        ({"id": 5}, "'id' must be str"),
    ],
)
def test_request_rejects_wrong_shapes(change: dict[str, object], message: str):
    """A request with a wrong version, command or field type is a ProtocolError."""
    with pytest.raises(ProtocolError, match=message):
        Request.decode(json.dumps(valid() | change))


@pytest.mark.parametrize("raw", [b"", b"\xff", b"[1]", b"null", b"{" * 5000, b"x" * 70_000])
def test_garbage_is_a_protocol_error(raw: bytes):
    """Non-JSON, non-objects, deep nesting and oversized messages are ProtocolErrors."""
    with pytest.raises(ProtocolError):
        Request.decode(raw)
