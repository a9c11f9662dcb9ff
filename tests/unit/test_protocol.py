"""Encoding and validation of control messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drainctl.errors import ProtocolError
from drainctl.protocol import PROTOCOL_VERSION, Command, Reply, Request

finite = st.floats(allow_nan=False, allow_infinity=False)
args = st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3)


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
    """Any request decodes to an equal request."""
    request = Request(command, sender, sent_at, sent_at + ttl, reply_to, args)
    assert Request.decode(request.encode()) == request


@given(ok=st.booleans(), error=st.none() | st.text(max_size=20), data=args)
def test_reply_round_trip(ok: bool, error: str | None, data: dict[str, object]):
    """Any reply decodes to an equal reply."""
    reply = Reply("r1", {"instance_id": "abc"}, "running", ok, dict(data), error)
    assert Reply.decode(reply.encode()) == reply


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
