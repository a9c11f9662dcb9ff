"""The one error hierarchy of drainctl.

```
DrainctlError
├── ConfigError            bad settings or arguments; an ACL refusal, no such database (CLI exit 2)
├── ProtocolError          a control message that cannot be decoded
│   └── Unauthenticated    unsigned, wrongly signed, expired or replayed
├── RedisUnavailable       Redis unreachable, out of memory, not speaking Redis (CLI exit 6)
├── NotAcknowledged        some instance did not answer or failed (CLI exit 3)
├── PushFailed             the push command failed               (CLI exit 4)
├── VerifyFailed           the new release is not healthy        (CLI exit 5)
├── DeployLocked           another deploy of the app is running  (CLI exit 7)
└── CommandNotRun          ``drainctl run`` could not start its command (CLI exit 127 or 126)
```

Each class carries its CLI ``exit_code``. Outside the tree, :class:`Terminated` is the
``KeyboardInterrupt`` that SIGTERM raises in the CLI (exit 143; Ctrl-C exits 130).

Lower-layer errors (redis-py, sockets, JSON) are translated where they cross into drainctl,
with the original chained as ``__cause__`` (for redis-py: ``drainctl.redis_errors``).
"""

from __future__ import annotations


class DrainctlError(Exception):
    """Root of every error drainctl raises on purpose."""

    exit_code = 1


class ConfigError(DrainctlError):
    """Settings or arguments are missing or malformed."""

    exit_code = 2


class ProtocolError(DrainctlError):
    """A control message is not valid JSON, has the wrong shape or an unknown version."""


class Unauthenticated(ProtocolError):
    """A control message failed authentication; the message never contains a secret."""


class RedisUnavailable(DrainctlError):
    """Redis could not be reached, is out of memory or does not speak Redis; the message names
    the URL with its password masked."""

    exit_code = 6


class NotAcknowledged(DrainctlError):
    """One or more targeted instances did not acknowledge a command in time, or failed it."""

    exit_code = 3


class PushFailed(DrainctlError):
    """The push (``git push`` or ``--push-cmd``) exited non-zero."""

    exit_code = 4


class VerifyFailed(DrainctlError):
    """After the push, the new release is not up, not stable, or an old one is still alive."""

    exit_code = 5


class DeployLocked(DrainctlError):
    """Another deploy of the app holds the deploy lock; the message names its holder."""

    exit_code = 7


class CommandNotRun(DrainctlError):
    """``drainctl run`` could not start its command: 127 when it is not found, 126 when it
    cannot be executed, as a shell says."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same clean-up runs (a closed terminal, a CI cancel)."""


# Shell convention: 128 + the signal's number.
INTERRUPTED = 130
TERMINATED = 143


def interrupt_code(exc: KeyboardInterrupt) -> int:
    """The exit code for an interrupt: 143 for SIGTERM, 130 for Ctrl-C."""
    return TERMINATED if isinstance(exc, Terminated) else INTERRUPTED
