"""What every ``drainctl`` command shares: the global options, their values, error handling.

Below ``cli.py`` and ``deploy/commands.py``, which both build commands from these pieces. Only
click and the standard library are imported at start-up (see ``cli.py``).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from drainctl.channel import ControlClient
    from drainctl.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

# Set to 1 to run without a secret and without the warning that says so.
ALLOW_UNSIGNED_ENV = "DRAINCTL_ALLOW_UNSIGNED"
UNSIGNED_WARNING = (
    "drainctl: warning: control messages are unauthenticated "
    f"(set DRAINCTL_SECRET or pass --secret; {ALLOW_UNSIGNED_ENV}=1 silences this)"
)


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Option callback: a finite, non-negative number of seconds (``type=float`` takes nan, inf)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value} is not a finite, non-negative number of seconds")
    return value


def seconds_option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` for a number of seconds, checked by :func:`_seconds`."""
    kwargs.setdefault("metavar", "SECONDS")
    return click.option(*names, type=float, callback=_seconds, **kwargs)


def help_width() -> int:
    """click's help width (the terminal's, at most 78), without the shutil import it makes for it.

    shutil brings bz2, lzma and zlib along: about 2.5 ms of the ~60 ms ``drainctl --help`` takes.
    """
    try:
        columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(1).columns
    except (ValueError, OSError):
        columns = 80
    return max(min(columns, 80) - 2, 50)


class Options:
    """The global options, passed to every command (a plain class: dataclasses costs start-up)."""

    def __init__(self, **values: Any) -> None:
        self.redis_url: str | None = values.get("redis_url")
        self.app: str | None = values.get("app")
        self.json: bool = bool(values.get("json"))
        self.verbose: bool = bool(values.get("verbose"))
        self.secret: str | None = values.get("secret")
        self.ssl_cert_reqs: str | None = values.get("ssl_cert_reqs")
        self.ssl_ca_certs: str | None = values.get("ssl_ca_certs")
        self.unsigned = False
        self._inferred = False

    def settings(self) -> Settings:
        """Settings from the options, the environment and, for the app, the heroku git remote."""
        from drainctl.config import Settings, parse_secrets

        settings = Settings.from_env(
            redis_url=self.redis_url,
            app=self.app,
            secrets=parse_secrets(self.secret) if self.secret else None,
            ssl_cert_reqs=self.ssl_cert_reqs,
            ssl_ca_certs=self.ssl_ca_certs,
        )
        self.unsigned = not settings.secrets
        if settings.app is None:
            from drainctl.gitapp import app_from_heroku_remote

            app = app_from_heroku_remote()
            if app is not None and not self._inferred:
                self._inferred = True
                click.echo(f"drainctl: app {app} (from the heroku git remote)", err=True)
            settings = settings.replace(app=app)
        return settings

    def client(self) -> ControlClient:
        """A requester for the app."""
        from drainctl.channel import ControlClient

        return ControlClient(self.settings())

    def warn_unsigned(self) -> None:
        """Once per run, after a command that worked: an error stays one line."""
        if self.unsigned and os.environ.get(ALLOW_UNSIGNED_ENV) != "1":
            self.unsigned = False
            click.echo(UNSIGNED_WARNING, err=True)


def handle_errors(func: F) -> F:
    """Turn DrainctlError into one clear line on stderr and its exit code; an interrupt into
    130 (Ctrl-C) or 143 (SIGTERM) instead of click's "Aborted!" and 1.

    A redis-py error that escaped translation on its way up is translated here, so no command
    ends in a traceback because of what Redis said.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from drainctl.errors import DrainctlError, interrupt_code

        try:
            result = func(*args, **kwargs)
        except DrainctlError as exc:
            _fail(exc)
        except KeyboardInterrupt as exc:
            sys.exit(interrupt_code(exc))
        except Exception as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            _fail(translated)
        opts = click.get_current_context().find_object(Options)
        if opts is not None:
            opts.warn_unsigned()
        return result

    return wrapper  # type: ignore[return-value]


def _fail(exc: Exception) -> NoReturn:
    click.echo(f"drainctl: {exc}", err=True)
    sys.exit(getattr(exc, "exit_code", 1))


def _translated(exc: Exception) -> Exception | None:
    """A redis-py error as the DrainctlError it stands for; None for anything else."""
    redis = sys.modules.get("redis")
    if redis is None or not isinstance(exc, redis.RedisError):
        return None
    from drainctl.errors import DrainctlError
    from drainctl.redis_errors import translate

    opts = click.get_current_context().find_object(Options)
    try:
        url = opts.settings().redis_url if opts is not None else "(unknown URL)"
    except DrainctlError:
        url = "(unknown URL)"
    return translate(exc, url)


# The global options: (declarations, click.option keyword arguments). The group takes them
# before the command; GlobalOptionsGroup adds them to every command too, so they also work after
# it (`drainctl status --json`, as kubectl's `-o json`).
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("--redis-url", "redis_url"),
        {
            "metavar": "URL",
            "show_default": "redis://localhost:6379/0",
            "help": "Redis to talk through [env DRAINCTL_REDIS_URL, then REDIS_URL].",
        },
    ),
    (
        ("--app", "app"),
        {
            "metavar": "NAME",
            "show_default": "the heroku git remote's",
            "help": "App name [env DRAINCTL_APP].",
        },
    ),
    (("--json", "json"), {"is_flag": True, "default": None, "help": "Machine-readable output."}),
    (
        ("--secret", "secret"),
        {
            "metavar": "S1[,S2]",
            "help": "Shared secret(s) to sign control messages, signing with the first "
            "[env DRAINCTL_SECRET, preferred: arguments are visible in ps].",
        },
    ),
    (
        ("--ssl-cert-reqs", "ssl_cert_reqs"),
        {
            "type": click.Choice(["none", "optional", "required"]),
            "help": "TLS certificate check for rediss:// ('none' for Heroku's self-signed "
            "certificates) [env DRAINCTL_SSL_CERT_REQS].",
        },
    ),
    (
        ("--ssl-ca-certs", "ssl_ca_certs"),
        {
            "metavar": "FILE",
            "help": "CA file to verify the rediss:// server with [env DRAINCTL_SSL_CA_CERTS].",
        },
    ),
    (
        ("-v", "--verbose", "verbose"),
        {"is_flag": True, "default": None, "help": "Debug logging on stderr."},
    ),
]


def global_options(func: F) -> F:
    """The global options on the group itself (before the command)."""
    for decls, kwargs in reversed(GLOBAL_OPTIONS):
        func = click.option(*decls, **kwargs)(func)
    return func


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after the command overrides the one before it."""
    opts = ctx.find_object(Options)
    if opts is None or value is None or param.name is None:
        return
    setattr(opts, param.name, value)
    if param.name == "verbose":
        import logging

        logging.getLogger().setLevel(logging.DEBUG)


class GlobalOptionsGroup(click.Group):
    """A group whose commands also accept the global options (those they do not define)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Register ``cmd`` with the global options it lacks appended (shown in its help)."""
        taken = {opt for param in cmd.params for opt in getattr(param, "opts", [])}
        for decls, kwargs in GLOBAL_OPTIONS:
            if taken.isdisjoint(decls[:-1]):
                cmd.params.append(
                    click.Option(list(decls), expose_value=False, callback=_set_global, **kwargs)
                )
        super().add_command(cmd, name)
