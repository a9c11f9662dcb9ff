"""Settings: every knob in one frozen dataclass, read from the environment in one place."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from drainctl.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


@dataclass(frozen=True)
class Settings:
    """Everything a listener or the CLI needs to know; build with :meth:`from_env`."""

    redis_url: str = DEFAULT_REDIS_URL
    app: str | None = None
    process_type: str | None = None
    dyno: str | None = None
    release: str = "unknown"
    commit: str | None = None
    heartbeat_interval: float = 5.0
    # A blocking read returns at least this often even when idle; it bounds how long a silently
    # dead TCP link goes unnoticed, at the cost of one command per period.
    block_timeout: float = 30.0
    reconnect_cap: float = 10.0
    connect_timeout: float = 3.0
    # A SIGKILLed clock's lease is taken over by another clock within this many seconds.
    lease_ttl: float = 15.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``DRAINCTL_*`` and Heroku's dyno metadata; ``overrides`` that are not None win."""
        env = os.environ if environ is None else environ
        dyno = env.get("DYNO") or None
        found: dict[str, Any] = {
            "redis_url": env.get("DRAINCTL_REDIS_URL") or env.get("REDIS_URL") or DEFAULT_REDIS_URL,
            "app": env.get("DRAINCTL_APP") or env.get("HEROKU_APP_NAME") or None,
            "process_type": env.get("DRAINCTL_PROCESS_TYPE") or (dyno and dyno.split(".")[0]),
            "dyno": dyno,
            "release": env.get("DRAINCTL_RELEASE")
            or env.get("HEROKU_RELEASE_VERSION")
            or env.get("HEROKU_SLUG_COMMIT")
            or "unknown",
            "commit": env.get("HEROKU_SLUG_COMMIT") or None,
        }
        if interval := env.get("DRAINCTL_HEARTBEAT_INTERVAL"):
            found["heartbeat_interval"] = _positive_float("DRAINCTL_HEARTBEAT_INTERVAL", interval)
        if ttl := env.get("DRAINCTL_LEASE_TTL"):
            found["lease_ttl"] = _positive_float("DRAINCTL_LEASE_TTL", ttl)
        found.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**found)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def require_app(self) -> str:
        """The app name, validated; raises ConfigError when unset or malformed."""
        if not self.app:
            raise ConfigError("no app given: pass --app or set DRAINCTL_APP")
        return validate_name("app", self.app)


def validate_name(what: str, value: str) -> str:
    """Names become part of Redis keys: letters, digits, '.', '_' and '-' only."""
    if not _NAME.match(value):
        raise ConfigError(f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-'")
    return value


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable url>"
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value
