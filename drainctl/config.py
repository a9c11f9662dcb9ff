"""Settings: every knob in one frozen dataclass, read from the environment in one place."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from drainctl.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# Matched in full: "$" alone would accept a trailing newline, and such an app would live in a
# key space of its own, invisible to --app NAME.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
SSL_CERT_REQS = ("none", "optional", "required")
# Query parameters of a Redis URL that carry credentials and must be masked like the password.
_SECRET_PARAMS = frozenset({"password", "ssl_password"})


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
    # Shared secrets for signing control messages: sign with the first, accept any (rotation).
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # How far a signed message's timestamp may be from the Redis server's clock.
    max_skew: float = 60.0
    # TLS for rediss:// URLs: "none" accepts a self-signed certificate (Heroku), or name a CA file.
    ssl_cert_reqs: str | None = None
    ssl_ca_certs: str | None = None

    def __post_init__(self) -> None:
        if self.ssl_cert_reqs is not None and self.ssl_cert_reqs not in SSL_CERT_REQS:
            allowed = ", ".join(SSL_CERT_REQS)
            raise ConfigError(f"ssl_cert_reqs must be one of {allowed}, got {self.ssl_cert_reqs!r}")

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks: never show the password or the secrets.
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        shown["redis_url"] = mask_url(self.redis_url)
        body = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"Settings({body}, secrets=<{len(self.secrets)} hidden>)"

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
        for name, key in _FLOAT_ENV.items():
            if raw := env.get(name):
                found[key] = _positive_float(name, raw)
        if secret := env.get("DRAINCTL_SECRET"):
            found["secrets"] = parse_secrets(secret)
        found["ssl_cert_reqs"] = env.get("DRAINCTL_SSL_CERT_REQS") or None
        found["ssl_ca_certs"] = env.get("DRAINCTL_SSL_CA_CERTS") or None
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


_FLOAT_ENV = {
    "DRAINCTL_HEARTBEAT_INTERVAL": "heartbeat_interval",
    "DRAINCTL_CONNECT_TIMEOUT": "connect_timeout",
    "DRAINCTL_LEASE_TTL": "lease_ttl",
    "DRAINCTL_MAX_SKEW": "max_skew",
}


def parse_secrets(raw: str | Sequence[str]) -> tuple[str, ...]:
    """``"new,old"`` (or a list) as a tuple of non-empty secrets, the signing one first."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    secrets = tuple(item.strip() for item in items if item.strip())
    if not secrets:
        raise ConfigError("the secret list is empty")
    return secrets


def validate_name(what: str, value: str) -> str:
    """Names become part of Redis keys: letters, digits, '.', '_' and '-' only."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-'")
    return value


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            port = f":{parts.port}" if parts.port else ""
            netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "<unparseable url>"
    masked = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in query]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(masked, safe="*")))


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value
