"""What a redis-py error means to drainctl: the DrainctlError each one becomes.

Outages, out of memory and a server that does not speak Redis are RedisUnavailable (CLI exit 6);
a missing ACL permission, a database that does not exist or a read-only replica, ConfigError
(exit 2). Each message names the (masked) URL and, for an ACL refusal, the command refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from redis.commands.core import Script

from drainctl.config import mask_url
from drainctl.errors import ConfigError, DrainctlError, RedisUnavailable
from drainctl.sockets import kernel_timed_out

# Errors that mean "Redis is not there right now".
OUTAGE_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)


def translate(exc: BaseException, url: str) -> DrainctlError:
    """The drainctl error for a redis-py or socket error ``exc`` met talking to ``url``."""
    masked = mask_url(url)
    for kind, describe in _TRANSLATIONS:
        if isinstance(exc, kind):
            translated = describe(exc, masked)
            if translated is not None:
                return translated
    return RedisUnavailable(f"Redis at {masked} refused a command: {exc}")


def _no_permission(exc: BaseException, url: str) -> DrainctlError:
    refused = re.search(r"'([^']+)' command", str(exc))
    what = f"the {refused.group(1).upper()} command" if refused else "a key or command"
    return ConfigError(
        f"the Redis user at {url} may not use {what} (ACL: {exc}); grant it with ACL SETUSER "
        "(see the README's ACLs)"
    )


def _out_of_memory(exc: BaseException, url: str) -> DrainctlError | None:
    if "OOM" not in str(exc) and "maxmemory" not in str(exc):
        return None
    return RedisUnavailable(
        f"Redis at {url} is out of memory and refuses writes ({exc}): maxmemory is reached and "
        "maxmemory-policy is noeviction; free memory or raise maxmemory"
    )


def _no_answer(exc: BaseException, url: str) -> DrainctlError | None:
    # redis-py words the kernel's timeout as "Resource temporarily unavailable".
    if not kernel_timed_out(exc):
        return None
    return RedisUnavailable(f"cannot reach Redis at {url}: it did not answer in time")


def _bad_database(exc: BaseException, url: str) -> DrainctlError | None:
    if "DB index is out of range" not in str(exc):
        return None
    return ConfigError(f"Redis at {url} has no such database ({exc}): check the URL's /N")


# Checked in order, the most specific first; a describer returning None passes the error on.
_Describe = Callable[[BaseException, str], "DrainctlError | None"]
_Kind = type[BaseException] | tuple[type[BaseException], ...]
_TRANSLATIONS: tuple[tuple[_Kind, _Describe], ...] = (
    (
        redis.AuthenticationError,  # a ConnectionError subclass: before the outages
        lambda exc, url: RedisUnavailable(f"Redis at {url} refused the credentials: {exc}"),
    ),
    (redis.exceptions.NoPermissionError, _no_permission),
    (redis.exceptions.ResponseError, _out_of_memory),  # also OOM raised inside a script
    (redis.exceptions.ResponseError, _bad_database),
    (
        redis.exceptions.ReadOnlyError,
        lambda exc, url: ConfigError(f"Redis at {url} is a read-only replica: {exc}"),
    ),
    (
        redis.exceptions.InvalidResponse,
        lambda exc, url: RedisUnavailable(f"the server at {url} is not speaking Redis ({exc})"),
    ),
    (
        redis.sentinel.MasterNotFoundError,  # its message ends with a repr of every client
        lambda exc, url: RedisUnavailable(
            f"cannot reach Redis at {url}: {str(exc).split(' : ')[0]} (no sentinel answered, "
            "or none knows that service)"
        ),
    ),
    (OUTAGE_ERRORS, _no_answer),
    (
        OUTAGE_ERRORS,
        lambda exc, url: RedisUnavailable(f"cannot reach Redis at {url}: {exc}"),
    ),
)


@contextmanager
def script_errors(script: Script) -> Iterator[None]:
    """Name the command an ACL refused inside ``script``.

    Redis reports it as "The user executing the script can't run this command ... on
    @user_script:LINE": the line of the script, not the command. Raised as NoPermissionError
    naming the command, so it is translated like a NOPERM refusal outside a script.
    """
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        line = re.search(r"can't run this command.*@user_script:(\d+)", str(exc))
        source = str(script.script).splitlines()
        if line is None or not 0 < int(line.group(1)) <= len(source):
            raise
        called = re.search(r"redis\.call\('(\w+)'", source[int(line.group(1)) - 1])
        command = called.group(1).lower() if called else "?"
        raise redis.exceptions.NoPermissionError(
            f"this user has no permissions to run the '{command}' command (in a drainctl script)"
        ) from exc
