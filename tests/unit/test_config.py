"""Settings, identity and URL masking."""

from __future__ import annotations

import pytest

from drainctl.config import Settings, mask_url
from drainctl.errors import ConfigError
from drainctl.identity import Identity


def test_heroku_environment():
    """On Heroku: app from HEROKU_APP_NAME, type from DYNO, release and commit from metadata."""
    settings = Settings.from_env(
        {
            "HEROKU_APP_NAME": "shop",
            "DYNO": "worker.3",
            "HEROKU_RELEASE_VERSION": "v42",
            "HEROKU_SLUG_COMMIT": "abc123",
            "REDIS_URL": "rediss://h:6379",
        }
    )
    identity = Identity.from_settings(settings)
    assert (identity.app, identity.process_type, identity.dyno) == ("shop", "worker", "worker.3")
    assert (identity.release, identity.commit) == ("v42", "abc123")
    assert settings.redis_url == "rediss://h:6379"


def test_drainctl_variables_win():
    """DRAINCTL_* variables take precedence over Heroku's, and explicit arguments over both."""
    env = {
        "HEROKU_APP_NAME": "shop",
        "DRAINCTL_APP": "shop-staging",
        "DYNO": "worker.1",
        "DRAINCTL_PROCESS_TYPE": "clock",
        "HEROKU_RELEASE_VERSION": "v1",
        "DRAINCTL_RELEASE": "r9",
        "REDIS_URL": "redis://a",
        "DRAINCTL_REDIS_URL": "redis://b",
    }
    settings = Settings.from_env(env)
    assert (settings.app, settings.process_type, settings.release, settings.redis_url) == (
        "shop-staging",
        "clock",
        "r9",
        "redis://b",
    )
    assert Settings.from_env(env, app="other", process_type=None).app == "other"


def test_release_falls_back_to_commit_then_unknown():
    """Without a release version the slug commit names the release, else 'unknown'."""
    assert Settings.from_env({"HEROKU_SLUG_COMMIT": "deadbeef"}).release == "deadbeef"
    assert Settings.from_env({}).release == "unknown"


def test_instance_ids_are_unique_per_start():
    """Two processes with the same DYNO get different instance ids."""
    settings = Settings(app="a", process_type="worker", dyno="worker.1")
    assert (
        Identity.from_settings(settings).instance_id != Identity.from_settings(settings).instance_id
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(process_type="worker"), "no app given"),
        (Settings(app="a"), "no process type"),
        (Settings(app="a:b", process_type="w"), "invalid app"),
        (Settings(app="a", process_type="w*"), "invalid process type"),
        (Settings(app="demo\n", process_type="w"), r"invalid app 'demo\\n'"),
        (Settings(app="demo", process_type="worker\n"), "invalid process type"),
        (Settings(app="de\x00mo", process_type="w"), "invalid app"),
        (Settings(app="demo", process_type="wor\tker"), "invalid process type"),
        (Settings(app="\ndemo", process_type="w"), "invalid app"),
    ],
)
def test_identity_needs_valid_names(settings: Settings, message: str):
    """Missing or malformed app and process type are configuration errors."""
    with pytest.raises(ConfigError, match=message):
        Identity.from_settings(settings)


def test_bad_heartbeat_interval():
    """A non-numeric or non-positive interval is a configuration error."""
    with pytest.raises(ConfigError, match="must be a number"):
        Settings.from_env({"DRAINCTL_HEARTBEAT_INTERVAL": "fast"})
    with pytest.raises(ConfigError, match="must be positive"):
        Settings.from_env({"DRAINCTL_HEARTBEAT_INTERVAL": "0"})


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:secret@host:6380", "rediss://user:***@host:6380"),
        ("redis://host:6379", "redis://host:6379"),
        ("redis://:pw@host:notaport", "<unparseable url>"),
    ],
)
def test_mask_url(url: str, masked: str):
    """Passwords never survive into messages."""
    assert mask_url(url) == masked
