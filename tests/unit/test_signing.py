"""Signing logic: canonical encoding, rotation, skew, recipient binding and replay (fakeredis)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from drainctl.config import Settings, mask_url, parse_secrets
from drainctl.connection import ServerClock
from drainctl.errors import ConfigError, ProtocolError, Unauthenticated
from drainctl.keys import Keys
from drainctl.protocol import Command, Reply, Request
from drainctl.signing import Gate, NonceStore, Signer, canonical, target_doc

NOW = 1_800_000_000.0
SECRET = "s3cret-value-never-logged"


def request(expires_in: float = 5.0) -> Request:
    return Request(
        command=Command.PING,
        sender="cli",
        sent_at=NOW,
        expires_at=NOW + expires_in,
        reply_to="drainctl:app:reply:1",
    )


def signed_body(
    signer: Signer, *, now: float = NOW, to: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = json.loads(request().encode()) | {"to": to or target_doc(None, None)}
    return signer.sign(body, "request", now)


class FixedClock(ServerClock):
    def __init__(self, now: float) -> None:
        super().__init__()
        self.fixed = now

    def now(self) -> float:
        return self.fixed


@pytest.fixture
def fake() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    yield client
    client.close()


def gate(
    client: fakeredis.FakeRedis, signer: Signer, instance: str = "i1", process_type: str = "worker"
) -> Gate:
    return Gate(signer, NonceStore(client, Keys("app"), instance), FixedClock(NOW), process_type)


def test_canonical_ignores_key_order_and_sig_and_separates_kinds() -> None:
    """The signed bytes do not depend on key order or on ``sig``, and name the message kind."""
    a = {"b": 1, "a": [1, "é"], "sig": "x"}
    b = {"a": [1, "é"], "b": 1}
    assert canonical(a, "request") == canonical(b, "request")
    assert canonical(a, "request") != canonical(a, "reply")
    assert canonical(a, "request") == b'drainctl/request\n{"a":[1,"\\u00e9"],"b":1}'


def test_canonical_refuses_non_finite_numbers() -> None:
    """NaN and infinity have no canonical JSON form: such a message is refused, not signed."""
    with pytest.raises(Unauthenticated, match="canonical"):
        canonical({"ts": float("nan")}, "request")


def test_signed_request_round_trips_and_binds_every_field() -> None:
    """A signed request verifies; changing any field, or the target, breaks the signature."""
    signer = Signer([SECRET])
    body = signed_body(signer)
    assert set(body) >= {"ts", "nonce", "sig", "to"}
    stamp = signer.verify(body, "request", NOW)
    assert stamp.ts == NOW
    assert len(stamp.nonce) == 32
    for name, value in [("command", "drain"), ("expires_at", NOW + 999), ("to", None)]:
        with pytest.raises(Unauthenticated, match="bad signature"):
            signer.verify(body | {name: value}, "request", NOW)
    with pytest.raises(Unauthenticated, match="bad signature"):
        signer.verify(body, "reply", NOW)


@pytest.mark.parametrize(
    ("to", "instance", "process_type", "accepted"),
    [
        (target_doc(None, None), "i2", "clock", True),
        (target_doc("i1", None), "i1abc", "worker", True),
        (target_doc("i1", None), "i2", "worker", False),
        (target_doc(None, {"clock"}), "i1", "clock", True),
        (target_doc(None, {"clock"}), "i1", "worker", False),
        ({"instance": 5, "types": "worker"}, "i1", "worker", False),
    ],
)
def test_request_is_accepted_only_by_its_target(
    fake: fakeredis.FakeRedis,
    to: dict[str, Any],
    instance: str,
    process_type: str,
    accepted: bool,
) -> None:
    """A signed request replayed into the inbox of an instance it was not sent to is rejected."""
    signer = Signer([SECRET])
    check = gate(fake, signer, instance, process_type)
    body = signed_body(signer, to=to)
    if accepted:
        check(body, "request")
    else:
        with pytest.raises(Unauthenticated, match="not this instance"):
            check(body, "request")


def test_two_signatures_of_the_same_request_differ() -> None:
    """Each signing draws a fresh nonce, so identical commands never share a signature."""
    signer = Signer([SECRET])
    assert signed_body(signer)["nonce"] != signed_body(signer)["nonce"]


def test_rotation_signs_with_first_and_accepts_any() -> None:
    """During a rotation the new secret signs, and both old and new signatures are accepted."""
    rotating = Signer(["new", "old"])
    old_only, new_only = Signer(["old"]), Signer(["new"])
    rotating.verify(signed_body(old_only), "request", NOW)
    rotating.verify(signed_body(new_only), "request", NOW)
    new_only.verify(signed_body(rotating), "request", NOW)
    with pytest.raises(Unauthenticated, match="bad signature"):
        old_only.verify(signed_body(rotating), "request", NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sig": None}, "unsigned"),
        ({"sig": 5}, "malformed"),
        ({"nonce": ["x"]}, "malformed"),
        ({"ts": "yesterday"}, "malformed"),
        ({"ts": True}, "malformed"),
        ({"ts": 10**400}, "malformed"),
        ({"sig": "0" * 64}, "bad signature"),
    ],
)
def test_unsigned_or_malformed_auth_fields_are_refused(change: dict[str, Any], reason: str) -> None:
    """Missing, mistyped or forged authentication fields are rejected with a reason."""
    signer = Signer([SECRET])
    body = signed_body(signer) | change
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(Unauthenticated, match=reason):
        signer.verify(body, "request", NOW)


@pytest.mark.parametrize("offset", [-61.0, 61.0])
def test_skew_beyond_limit_is_refused(offset: float) -> None:
    """A timestamp more than max_skew from the server clock (either way) is rejected."""
    signer = Signer([SECRET], max_skew=60)
    body = signed_body(signer, now=NOW + offset)
    with pytest.raises(Unauthenticated, match="off the server clock"):
        signer.verify(body, "request", NOW)
    assert signer.verify(signed_body(signer, now=NOW + offset / 61 * 59), "request", NOW)


def test_skew_limit_is_configurable() -> None:
    """max_skew comes from settings: 5 s refuses a 6 s old message that 60 s would accept."""
    strict = Signer.from_settings(Settings(secrets=("k",), max_skew=5))
    assert strict is not None
    body = signed_body(strict, now=NOW - 6)
    with pytest.raises(Unauthenticated):
        strict.verify(body, "request", NOW)
    Signer(["k"]).verify(body, "request", NOW)


def test_no_secret_means_no_signer() -> None:
    """Without secrets nothing is signed or checked."""
    assert Signer.from_settings(Settings()) is None


def test_replayed_request_is_refused(fake: fakeredis.FakeRedis) -> None:
    """The gate accepts a signed request once; the very same bytes again are a replay."""
    signer = Signer([SECRET])
    raw = json.dumps(signed_body(signer))
    check = gate(fake, signer)
    assert Request.decode(raw, check).command is Command.PING
    with pytest.raises(Unauthenticated, match="replayed"):
        Request.decode(raw, check)


def test_request_signed_before_the_instance_started_is_refused(fake: fakeredis.FakeRedis) -> None:
    """An instance refuses a request signed before its start (local start + the clock offset),
    and records no nonce for it; one signed at or after its start passes."""
    signer = Signer([SECRET])
    clock = FixedClock(NOW)
    clock.offset = 2.0  # the server clock runs 2 s ahead of this machine's
    check = Gate(signer, NonceStore(fake, Keys("app"), "i1"), clock, "worker", not_before=NOW - 3)
    with pytest.raises(Unauthenticated, match=r"signed 0\.500 s before this instance started"):
        check(signed_body(signer, now=NOW - 1.5), "request")
    assert fake.keys("*") == []
    check(signed_body(signer, now=NOW - 1.0), "request")


def test_nonce_is_kept_only_while_the_message_could_pass(fake: fakeredis.FakeRedis) -> None:
    """The nonce key expires with the request (here 5 s), not after the full skew window."""
    signer = Signer([SECRET], max_skew=60)
    body = signed_body(signer)
    gate(fake, signer)(body, "request")
    keys = fake.keys("drainctl:app:nonce:i1:*")
    assert len(keys) == 1
    assert 5000 <= fake.pttl(keys[0]) <= 6000


def test_gate_refuses_unsigned_request(fake: fakeredis.FakeRedis) -> None:
    """A listener with a secret rejects a plain, unsigned request and records no nonce."""
    with pytest.raises(Unauthenticated, match="unsigned"):
        Request.decode(request().encode(), gate(fake, Signer([SECRET])))
    assert fake.keys("*") == []


def test_out_of_range_numbers_are_protocol_errors(fake: fakeredis.FakeRedis) -> None:
    """Huge integers and far-future times in a validly signed request are refused cleanly."""
    signer = Signer([SECRET])
    for change in ({"expires_at": 10**400}, {"sent_at": 10**400}):
        body = signer.sign(json.loads(request().encode()) | change, "request", NOW)
        with pytest.raises(ProtocolError, match="not JSON: number is infinity"):
            Request.decode(json.dumps(body), gate(fake, signer))


def test_signed_reply_round_trips() -> None:
    """A reply signed by a listener verifies on the requester; a tampered one does not."""
    signer = Signer([SECRET])
    reply = Reply(
        request_id="r1", instance={"instance_id": "i1"}, state="running", data={"x": (1,)}
    )
    raw = reply.encode(functools.partial(signer.sign, now=NOW))
    decoded = Reply.decode(raw, functools.partial(signer.verify, now=NOW))
    assert decoded.data == {"x": [1]}
    forged = raw.replace(b'"running"', b'"drained"')
    with pytest.raises(Unauthenticated):
        Reply.decode(forged, functools.partial(signer.verify, now=NOW))


def test_rejections_never_contain_the_secret(fake: fakeredis.FakeRedis) -> None:
    """No rejection reason, nor the signer's repr, reveals a secret."""
    signer = Signer([SECRET, "older-secret"])
    body = signed_body(Signer(["wrong"]))
    reasons = []
    for candidate in (body, {**body, "sig": None}, signed_body(signer, now=0)):
        with pytest.raises(Unauthenticated) as caught:
            gate(fake, signer)(candidate, "request")
        reasons.append(str(caught.value))
    for text in [*reasons, repr(signer)]:
        assert SECRET not in text
        assert "older-secret" not in text


def test_settings_repr_hides_secrets_and_password() -> None:
    """Settings printed in a log or traceback show neither the secrets nor the Redis password."""
    settings = Settings(redis_url="rediss://u:hunter2@h:6380/0", secrets=(SECRET,))
    text = repr(settings)
    assert "hunter2" not in text
    assert SECRET not in text
    assert "rediss://u:***@h:6380/0" in text


def test_mask_url_masks_password_in_userinfo_and_query() -> None:
    """Both ``user:pass@`` and a ``?password=`` query parameter are masked."""
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    masked = mask_url("rediss://h:1/0?password=pw&ssl_cert_reqs=none")
    assert "pw" not in masked.replace("ssl_cert_reqs", "")
    assert "ssl_cert_reqs=none" in masked


def test_parse_secrets_splits_and_strips() -> None:
    """``DRAINCTL_SECRET=new, old`` yields two secrets, new first; an empty list is an error."""
    assert parse_secrets(" new, old ,") == ("new", "old")
    assert Settings.from_env({"DRAINCTL_SECRET": "a,b"}).secrets == ("a", "b")
    with pytest.raises(ConfigError):
        parse_secrets(" , ")


def test_invalid_ssl_cert_reqs_is_a_config_error() -> None:
    """Only none, optional and required are accepted for ssl_cert_reqs."""
    with pytest.raises(ConfigError, match="ssl_cert_reqs"):
        Settings(ssl_cert_reqs="maybe")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@hypothesis_settings(deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["v", "command", "id", "sender", "sent_at", "expires_at", "ts", "sig"]),
        json_values,
    )
)
def test_decode_of_arbitrary_json_raises_only_protocol_errors(body: dict[str, Any]) -> None:
    """Whatever JSON arrives, decoding with a gate either succeeds or raises ProtocolError."""
    signer = Signer([SECRET])
    check = functools.partial(signer.verify, now=NOW)
    raw = json.dumps(body | {"v": 1})
    try:
        Request.decode(raw, check)
    except ProtocolError:
        return
    raise AssertionError("an unsigned random body was accepted")


def test_environment_sets_trust_options() -> None:
    """DRAINCTL_SECRET, _MAX_SKEW, _CONNECT_TIMEOUT, _SSL_CERT_REQS and _SSL_CA_CERTS are read."""
    settings = Settings.from_env(
        {
            "DRAINCTL_SECRET": "new,old",
            "DRAINCTL_MAX_SKEW": "5",
            "DRAINCTL_CONNECT_TIMEOUT": "1.5",
            "DRAINCTL_SSL_CERT_REQS": "none",
            "DRAINCTL_SSL_CA_CERTS": "/etc/ca.pem",
        }
    )
    assert settings.secrets == ("new", "old")
    assert (settings.max_skew, settings.connect_timeout) == (5.0, 1.5)
    assert (settings.ssl_cert_reqs, settings.ssl_ca_certs) == ("none", "/etc/ca.pem")
