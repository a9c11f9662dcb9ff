"""Heartbeat documents: sealing, the signature check, and defensive parsing of forged ones."""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import pytest

from drainctl.heartbeat import DEFAULT_INTERVAL, Checker, interval_of, seal
from drainctl.signing import Signer

SECRET = "heartbeat-secret"


def doc(**changes: Any) -> dict[str, Any]:
    base = {
        "instance_id": "abc123",
        "process_type": "worker",
        "dyno": "worker.1",
        "release": "v1",
        "heartbeat_interval": 1.0,
        "beat_at": 1_800_000_000.5,
    }
    return base | changes


def test_sealed_document_is_verified_and_carries_the_version() -> None:
    """A document sealed with the secret passes the check and names the drainctl version."""
    raw = seal(doc(), Signer([SECRET]))
    checked = Checker(Signer([SECRET])).check("abc123", raw)
    assert checked is not None
    assert checked.verified is True
    assert checked.doc["drainctl_version"]
    assert checked.doc["ts"] == 1_800_000_000.5  # the signed time is the beat time


@pytest.mark.parametrize(
    ("raw", "doubt"),
    [
        (json.dumps(doc()), "unsigned"),
        (seal(doc(), Signer(["another-secret"])), "bad signature"),
        (
            json.dumps(json.loads(seal(doc(), Signer([SECRET]))) | {"commit": "new"}),
            "bad signature",
        ),
    ],
)
def test_unsigned_wrongly_signed_or_altered_documents_are_unverified(
    raw: str | bytes, doubt: str
) -> None:
    """With a secret, a document that fails the check is kept but marked unverified, with why."""
    checked = Checker(Signer([SECRET])).check("abc123", raw)
    assert checked is not None
    assert (checked.verified, checked.doubt) == (False, doubt)


def test_without_a_secret_nothing_is_checked() -> None:
    """No secret: every well-formed document passes, verified None."""
    checked = Checker().check("abc123", seal(doc(), None))
    assert checked is not None
    assert checked.verified is None


@pytest.mark.parametrize("interval", ["x", None, 1e308, -1, 0, True, [1], {"a": 1}])
def test_a_senseless_interval_becomes_the_default_with_one_warning(
    interval: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """heartbeat_interval "x", null, 1e308... is reset to the default, warned about once."""
    checker = Checker()
    for _ in range(3):
        checked = checker.check("abc123", orjson.dumps(doc(heartbeat_interval=interval)))
        assert checked is not None
        assert checked.doc["heartbeat_interval"] == DEFAULT_INTERVAL
    assert len([r for r in caplog.records if "heartbeat_interval" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{", "is not JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b'"text"', "is not a JSON object"),
        (orjson.dumps(doc(instance_id="someone-else")), "names another instance id"),
        (orjson.dumps({"instance_id": "abc123"}), "has no printable process_type"),
        (orjson.dumps(doc(process_type=["worker"])), "has no printable process_type"),
        (orjson.dumps(doc(process_type="work\ner")), "has no printable process_type"),
    ],
)
def test_malformed_documents_are_skipped_with_a_warning(
    raw: bytes, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A document without the shape of a heartbeat is skipped, never raised about."""
    caplog.set_level(logging.WARNING)
    assert Checker(Signer([SECRET])).check("abc123", raw) is None
    assert problem in caplog.text


def test_fields_of_the_wrong_type_are_dropped_and_control_characters_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Known fields of the wrong type go; escape sequences in strings become '?'."""
    forged = doc(dyno=[1], pid="x", memory_mb="lots", last_error=[1], commit="\x1b[2Jabc")
    checked = Checker().check("abc123", orjson.dumps(forged))
    assert checked is not None
    for name in ("dyno", "pid", "memory_mb", "last_error"):
        assert name not in checked.doc
    assert checked.doc["commit"] == "?[2Jabc"
    assert "dyno, pid, memory_mb, last_error" in caplog.text
    assert "control characters" in caplog.text


def test_interval_of_accepts_sensible_numbers_only() -> None:
    """Positive, finite, at most a day; anything else gives the default."""
    assert interval_of({"heartbeat_interval": 2}) == 2.0
    assert interval_of({"heartbeat_interval": 86_401}) == DEFAULT_INTERVAL
    assert interval_of({}) == DEFAULT_INTERVAL
