"""The one error hierarchy of drainctl.

```
DrainctlError
├── ConfigError            bad settings or arguments; an ACL refusal, no such database (CLI exit 2)
├── ProtocolError          a control message that cannot be decoded
│   └── Unauthenticated    unsigned, wrongly signed, expired or replayed
├── RedisUnavailable       Redis unreachable, out of memory, not speaking Redis (CLI exit 6)
├── NotAcknowledged        some instance did not answer or failed (CLI exit 3)
├── PushFailed             the push command failed               (CLI exit 4)
└── VerifyFailed           the new release is not healthy        (CLI exit 5)
```

Lower-layer errors (redis-py, sockets, JSON) are translated where they cross into drainctl,
with the original chained as ``__cause__`` (for redis-py: ``drainctl.redis_errors``).
"""

from __future__ import annotations


class DrainctlError(Exception):
    """Root of every error drainctl raises on purpose."""


class ConfigError(DrainctlError):
    """Settings or arguments are missing or malformed."""


class ProtocolError(DrainctlError):
    """A control message is not valid JSON, has the wrong shape or an unknown version."""


class Unauthenticated(ProtocolError):
    """A control message failed authentication; the message never contains a secret."""


class RedisUnavailable(DrainctlError):
    """Redis could not be reached, is out of memory or does not speak Redis; the message names
    the URL with its password masked."""


class NotAcknowledged(DrainctlError):
    """One or more targeted instances did not acknowledge a command in time, or failed it."""


class PushFailed(DrainctlError):
    """The push (``git push`` or ``--push-cmd``) exited non-zero."""


class VerifyFailed(DrainctlError):
    """After the push, the new release is not up, not stable, or an old one is still alive."""
