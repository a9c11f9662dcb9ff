"""The wire format: commands, requests and replies as versioned JSON.

All timestamps are on the Redis server's clock (see ``drainctl.clock``), so a laptop whose clock is
off does not make a dyno drop its requests as expired.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from drainctl.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024

# Hooks for authentication (see ``drainctl.signing``), called with the JSON body and the kind
# ("request" or "reply"): a Seal returns the body with its signature fields added, a Check raises
# ProtocolError to reject a received body before it is trusted.
Seal = Callable[[dict[str, Any], str], dict[str, Any]]
Check = Callable[[dict[str, Any], str], None]


class Command(str, Enum):
    """What a requester can ask a listener to do."""

    PING = "ping"
    STATUS = "status"
    DRAIN = "drain"
    RESUME = "resume"


class State(str, Enum):
    """Where a listener is in the drain cycle."""

    RUNNING = "running"
    DRAINING = "draining"
    DRAINED = "drained"
    # A clock that lost its lease to a newer one: it never fires again.
    FENCED = "fenced"


@dataclass(frozen=True)
class Request:
    """A command addressed to one instance; ``reply_to`` is the list to push the reply to."""

    command: Command
    sender: str
    sent_at: float
    expires_at: float
    reply_to: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def encode(self, seal: Seal | None = None) -> bytes:
        """JSON bytes with the protocol version, signed by ``seal`` when given."""
        body = vars(self) | {"v": PROTOCOL_VERSION, "command": self.command.value}
        return _dump(body, "request", seal)

    @classmethod
    def decode(cls, raw: bytes | str, check: Check | None = None) -> Request:
        """Parse and validate; raises ProtocolError if malformed or refused by ``check``."""
        body = _load(raw, "request", check)
        try:
            command = Command(body.get("command"))
        except ValueError:
            raise ProtocolError(f"unknown command {body.get('command')!r}") from None
        return cls(
            command=command,
            sender=_field(body, "sender", str),
            sent_at=_number(body, "sent_at"),
            expires_at=_number(body, "expires_at"),
            reply_to=_field(body, "reply_to", str),
            args=_field(body, "args", dict),
            id=_field(body, "id", str),
        )


@dataclass(frozen=True)
class Reply:
    """A listener's answer: who it is, the state it is now in, and command-specific data."""

    request_id: str
    instance: dict[str, Any]
    state: str
    ok: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def encode(self, seal: Seal | None = None) -> bytes:
        """JSON bytes with the protocol version, signed by ``seal`` when given."""
        return _dump(vars(self) | {"v": PROTOCOL_VERSION}, "reply", seal)

    @classmethod
    def decode(cls, raw: bytes | str, check: Check | None = None) -> Reply:
        """Parse and validate; raises ProtocolError if malformed or refused by ``check``."""
        body = _load(raw, "reply", check)
        error = body.get("error")
        if error is not None and not isinstance(error, str):
            raise ProtocolError("field 'error' must be a string or null")
        return cls(
            request_id=_field(body, "request_id", str),
            instance=_field(body, "instance", dict),
            state=_field(body, "state", str),
            ok=_field(body, "ok", bool),
            data=_field(body, "data", dict),
            error=error,
        )

    @property
    def instance_id(self) -> str:
        """The replying instance's id."""
        return str(self.instance.get("instance_id", "?"))


def dump_json(value: Any) -> bytes:
    """Compact JSON; what JSON cannot hold becomes its ``str()``.

    orjson rather than the standard library: a listener's CPU per request is its latency on a
    busy dyno, and encoding and decoding were a third of it. orjson refuses integers beyond 64
    bits and very deep nesting; the standard library writes those (they come back as floats, or
    are refused, on the other side: see ``_load``).
    """
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def _dump(body: dict[str, Any], kind: str, seal: Seal | None) -> bytes:
    if seal is not None:
        # Sign what the receiver will parse: tuples become lists, other objects strings.
        body = seal(orjson.loads(dump_json(body)), kind)
    return dump_json(body)


def _load(raw: bytes | str, kind: str, check: Check | None) -> dict[str, Any]:
    # orjson reads integers beyond 64 bits as floats and refuses NaN, Infinity and numbers
    # beyond a double's range as not JSON: every number that gets through is a finite float/int.
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        body = orjson.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ProtocolError("message is not a JSON object")
    if body.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {body.get('v')!r}")
    if check is not None:
        check(body, kind)
    return body


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    # bool is a subclass of int; keep the check exact so `true` is never a number and vice versa.
    if type(value) is not kind:
        raise ProtocolError(f"field {name!r} must be {kind.__name__}")
    return value


def _number(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ProtocolError(f"field {name!r} must be a number")
    return float(value)
