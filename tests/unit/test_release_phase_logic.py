"""Pure logic of the release phase: which releases are older, its plan, its awaiting record."""

from __future__ import annotations

import pytest

from drainctl.config import Settings
from drainctl.deploy.awaiting import Awaiting
from drainctl.deploy.plan import make_plan, older_than
from drainctl.deploy.release_phase import incoming_from
from drainctl.errors import ConfigError, ProtocolError, Unauthenticated
from drainctl.signing import Signer
from tests.unit.test_deploy_logic import SHA, record


@pytest.mark.parametrize(
    ("release", "new", "older"),
    [
        ("v41", "v42", True),
        ("v9", "v10", True),  # by number, not by text
        ("v42", "v42", False),
        ("v43", "v42", False),  # a newer release already runs: never drained
        ("abc123", "def456", True),  # no numbers: any other release
        ("abc123", "abc123", False),
        ("unknown", "v42", True),
    ],
)
def test_older_than(release: str, new: str, older: bool) -> None:
    """Numbered releases compare by number; others are older unless they are the new one."""
    assert older_than(release, new) is older


def test_a_plan_with_a_known_release_leaves_the_new_and_newer_ones_alone() -> None:
    """Only v1 instances are drained and fenced when deploying v2; a v3 instance is left."""
    live = [record("1", release="v1"), record("2", release="v2"), record("3", release="v3")]
    plan = make_plan(SHA, ("worker",), live, "v2")
    assert [r.instance_id for r in plan.instances] == ["1"]
    assert plan.releases == ("v1",)
    assert plan.release == "v2"


def test_the_release_comes_from_the_release_dyno_and_is_required(tmp_path: object) -> None:
    """DRAINCTL_RELEASE wins over HEROKU_RELEASE_VERSION; without any: ConfigError (exit 2)."""
    env = {"DRAINCTL_RELEASE": "img-7", "HEROKU_RELEASE_VERSION": "v42", "HEROKU_SLUG_COMMIT": SHA}
    incoming = incoming_from(Settings.from_env(env))(None, tmp_path)  # type: ignore[arg-type]
    assert (incoming.release, incoming.commit) == ("img-7", SHA)
    with pytest.raises(ConfigError, match="no release to deploy"):
        incoming_from(Settings.from_env({}))


def test_the_awaiting_record_round_trips_signed_and_refuses_forgeries() -> None:
    """Signed with the app's secret it decodes; unsigned, tampered or malformed it does not."""
    signer = Signer(["s3cret"])
    record_ = Awaiting("d1", "v2", SHA, ("v1",), ("clock", "worker"), {"worker": 2}, ("a", "b"))
    assert Awaiting.decode(record_.encode(signer, 100.0), signer) == record_
    with pytest.raises(Unauthenticated):
        Awaiting.decode(record_.encode(None, 0.0), signer)
    tampered = record_.encode(signer, 100.0).replace('"worker": 2', '"worker": 0')
    with pytest.raises(Unauthenticated):
        Awaiting.decode(tampered, signer)
    with pytest.raises(ProtocolError, match="malformed"):
        Awaiting.decode('{"deploy_id": "d1"}', None)
