"""TLS options for rediss:// URLs: option versus query parameter, CA file, the warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from drainctl.config import Settings
from drainctl.connection import tls_options
from drainctl.errors import ConfigError


def test_options_apply_to_rediss_only() -> None:
    """A plain redis:// URL gets no TLS options, so one environment serves local and Heroku."""
    assert tls_options(Settings(redis_url="redis://h:1/0", ssl_cert_reqs="none")) == {}


def test_option_is_passed_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    """ssl_cert_reqs=none as an option reaches redis-py and logs that verification is off."""
    settings = Settings(redis_url="rediss://u:pw@h:1/0", ssl_cert_reqs="none")
    assert tls_options(settings) == {"ssl_cert_reqs": "none"}
    assert "verification is off" in caplog.text
    assert "pw" not in caplog.text.replace("rediss://u:***@", "")


def test_url_query_wins_over_the_option(caplog: pytest.LogCaptureFixture) -> None:
    """The URL's own ?ssl_cert_reqs= is left to redis-py and still triggers the warning."""
    settings = Settings(redis_url="rediss://h:1/0?ssl_cert_reqs=none", ssl_cert_reqs="required")
    assert tls_options(settings) == {}
    assert "verification is off" in caplog.text


def test_ca_file_is_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A CA file is passed on when it exists, silently; a missing one is a ConfigError."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    caplog.set_level(logging.WARNING)
    assert tls_options(Settings(redis_url="rediss://h:1/0", ssl_ca_certs=str(ca))) == {
        "ssl_ca_certs": str(ca)
    }
    assert not caplog.records
    with pytest.raises(ConfigError, match="does not exist"):
        tls_options(Settings(redis_url="rediss://h:1/0", ssl_ca_certs=str(tmp_path / "nope")))
