"""The ``drainctl`` command: parse options, call the library, render the result.

Only click is imported at start-up; redis, rich and the library load inside each command, so
``drainctl --help`` stays fast and never imports apscheduler, rq or celery.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from drainctl.__about__ import __version__

if TYPE_CHECKING:
    from drainctl.channel import ControlClient, Outcome
    from drainctl.config import Settings
    from drainctl.protocol import Command

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  2  usage or configuration error
  3  some instance did not acknowledge, or failed to drain
  4  the push failed
  5  verification of the new release failed
  6  Redis unreachable, out of memory or not speaking Redis
  7  another deploy of the app is in progress (the deploy lock)
  130, 143  interrupted by Ctrl-C (SIGINT), by SIGTERM
"""

F = TypeVar("F", bound=Callable[..., Any])


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Option callback: a finite, non-negative number of seconds (``type=float`` takes nan, inf)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value} is not a finite, non-negative number of seconds")
    return value


def seconds_option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` for a number of seconds, checked by :func:`_seconds`."""
    return click.option(*names, type=float, callback=_seconds, **kwargs)


def _help_width() -> int:
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

    def __init__(
        self,
        *,
        redis_url: str | None,
        app: str | None,
        json: bool,
        verbose: bool = False,
        secret: str | None = None,
        ssl_cert_reqs: str | None = None,
        ssl_ca_certs: str | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.app = app
        self.json = json
        self.verbose = verbose
        self.secret = secret
        self.ssl_cert_reqs = ssl_cert_reqs
        self.ssl_ca_certs = ssl_ca_certs
        self.warned = False

    def settings(self) -> Settings:
        from drainctl.config import Settings, parse_secrets

        settings = Settings.from_env(
            redis_url=self.redis_url,
            app=self.app,
            secrets=parse_secrets(self.secret) if self.secret else None,
            ssl_cert_reqs=self.ssl_cert_reqs,
            ssl_ca_certs=self.ssl_ca_certs,
        )
        if not settings.secrets and not self.warned:
            self.warned = True
            click.echo(
                "drainctl: warning: control messages are unauthenticated "
                "(set DRAINCTL_SECRET or pass --secret)",
                err=True,
            )
        return settings

    def client(self) -> ControlClient:
        from drainctl.channel import ControlClient

        return ControlClient(self.settings())


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
            return func(*args, **kwargs)
        except DrainctlError as exc:
            _fail(exc)
        except KeyboardInterrupt as exc:
            sys.exit(interrupt_code(exc))
        except Exception as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            _fail(translated)

    return wrapper  # type: ignore[return-value]


def _raise_terminated(signum: int, frame: Any) -> None:
    from drainctl.errors import Terminated

    raise Terminated


def _sigterm_interrupts(ctx: click.Context) -> None:
    """SIGTERM unwinds like Ctrl-C (clean-up runs, exit 143); rq-worker keeps its own drain."""
    import signal
    import threading

    if (
        ctx.invoked_subcommand != "rq-worker"
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGTERM, _raise_terminated)


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


@click.group(epilog=EXIT_CODES_HELP, context_settings={"terminal_width": _help_width()})
@click.version_option(__version__, prog_name="drainctl")
@click.option(
    "--redis-url",
    metavar="URL",
    help="Redis to talk through [env DRAINCTL_REDIS_URL, then REDIS_URL; "
    "default redis://localhost:6379/0].",
)
@click.option("--app", metavar="NAME", help="App name [env DRAINCTL_APP].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--secret",
    metavar="S1[,S2]",
    help="Shared secret(s) to sign control messages, signing with the first "
    "[env DRAINCTL_SECRET, preferred: arguments are visible in ps].",
)
@click.option(
    "--ssl-cert-reqs",
    type=click.Choice(["none", "optional", "required"]),
    help="TLS certificate check for rediss:// ('none' for Heroku's self-signed certificates) "
    "[env DRAINCTL_SSL_CERT_REQS].",
)
@click.option(
    "--ssl-ca-certs",
    metavar="FILE",
    help="CA file to verify the rediss:// server with [env DRAINCTL_SSL_CA_CERTS].",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging on stderr.")
@click.pass_context
def main(
    ctx: click.Context,
    *,
    redis_url: str | None,
    app: str | None,
    as_json: bool,
    secret: str | None,
    ssl_cert_reqs: str | None,
    ssl_ca_certs: str | None,
    verbose: bool,
) -> None:
    """Drain clock and worker processes over Redis before a deploy, then verify the new release."""
    # Imported here, not at the top: `drainctl --help` never gets this far, and logging (with
    # traceback) was a tenth of its start-up time.
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _sigterm_interrupts(ctx)
    ctx.obj = Options(
        redis_url=redis_url,
        app=app,
        json=as_json,
        verbose=verbose,
        secret=secret,
        ssl_cert_reqs=ssl_cert_reqs,
        ssl_ca_certs=ssl_ca_certs,
    )


def _process_types(values: tuple[str, ...]) -> frozenset[str] | None:
    return frozenset(values) or None


@main.command()
@click.pass_obj
@handle_errors
def status(opts: Options) -> None:
    """List live instances: type, dyno, release, state, jobs in flight, memory, last beat.

    With a secret, a heartbeat not signed with it shows as UNVERIFIED.
    """
    from drainctl import render
    from drainctl.connection import translate_outage
    from drainctl.deploy.lock import read_holder, server_now
    from drainctl.signing import Signer

    client = opts.client()
    records = client.live(unverified=True)
    with translate_outage(client.settings):
        holder = read_holder(client.client, client.app, Signer.from_settings(client.settings))
        now = server_now(client.client)
    if opts.json:
        render.emit_json([record.as_dict() for record in records])
        return
    if holder is not None:
        click.echo(f"deploy in progress: {holder.describe(now)}")
    if records:
        render.status_table(records)
    else:
        click.echo("no live instances")


def _command(
    opts: Options,
    command: Command,
    *,
    process_type: tuple[str, ...],
    instance: str | None,
    timeout: float,
    args: dict[str, Any] | None = None,
) -> Outcome:
    """Send one command, render the outcome, and fail with exit 3 unless everyone succeeded."""
    from drainctl import render
    from drainctl.channel import Target
    from drainctl.errors import NotAcknowledged

    target = Target(instance_id=instance, process_types=_process_types(process_type))
    outcome = opts.client().send(command, target=target, args=args, timeout=timeout)
    if opts.json:
        render.emit_json(render.outcome_dict(outcome))
    elif outcome.replies or outcome.missing:
        render.outcome_table(outcome)
    else:
        click.echo("no live instances matched")
    if not outcome.ok:
        parts = [f"{len(outcome.missing)} did not answer"] if outcome.missing else []
        parts += [f"{len(outcome.failed)} failed"] if outcome.failed else []
        raise NotAcknowledged(f"{command.value}: " + ", ".join(parts))
    return outcome


def targeting(func: F) -> F:
    """The options shared by commands that address instances."""
    func = click.option("--instance", metavar="ID", help="Only this instance (id or prefix).")(func)
    return click.option(
        "--process-type",
        "-t",
        multiple=True,
        metavar="TYPE",
        help="Only these process types (repeatable).",
    )(func)


@main.command()
@targeting
@seconds_option("--timeout", default=2.0, show_default=True, help="Seconds to wait for replies.")
@click.pass_obj
@handle_errors
def ping(
    opts: Options, process_type: tuple[str, ...], instance: str | None, timeout: float
) -> None:
    """Round-trip time to each instance."""
    from drainctl.protocol import Command

    _command(opts, Command.PING, process_type=process_type, instance=instance, timeout=timeout)


@main.command()
@targeting
@seconds_option(
    "--deadline",
    default=25.0,
    show_default=True,
    help="Seconds each instance may wait for its work in flight.",
)
@seconds_option("--timeout", help="Seconds to wait for acknowledgements [default: deadline + 5].")
@click.pass_obj
@handle_errors
def drain(
    opts: Options,
    process_type: tuple[str, ...],
    instance: str | None,
    deadline: float,
    timeout: float | None,
) -> None:
    """Stop new work and wait for every targeted instance to acknowledge its drain."""
    from drainctl.protocol import Command

    try:
        _command(
            opts,
            Command.DRAIN,
            process_type=process_type,
            instance=instance,
            timeout=timeout if timeout is not None else deadline + 5,
            args={"deadline": deadline},
        )
    except KeyboardInterrupt:
        _interrupted_drain(opts, process_type, instance)
        raise


def _interrupted_drain(opts: Options, process_type: tuple[str, ...], instance: str | None) -> None:
    """The drain request was delivered: say who is draining now and how to resume them."""
    import shlex

    from drainctl.errors import DrainctlError

    command = ["drainctl", "--app", opts.client().app, "resume"]
    command += [part for kind in process_type for part in ("-t", kind)]
    command += ["--instance", instance] if instance else []
    try:
        records = opts.client().live(_process_types(process_type))
        held = [r for r in records if r.doc.get("state") in ("draining", "drained")]
        who = ", ".join(r.label for r in held) or "none yet"
    except DrainctlError:
        who = "unknown (Redis unreachable)"
    click.echo(
        f"drainctl: interrupted; draining or drained: {who}; the drain request was delivered, "
        f"so the others drain too: resume them with `{shlex.join(command)}`",
        err=True,
    )


@main.command()
@targeting
@seconds_option("--timeout", default=5.0, show_default=True, help="Seconds to wait for replies.")
@click.pass_obj
@handle_errors
def resume(
    opts: Options, process_type: tuple[str, ...], instance: str | None, timeout: float
) -> None:
    """Let drained instances take work again."""
    from drainctl.protocol import Command

    _command(opts, Command.RESUME, process_type=process_type, instance=instance, timeout=timeout)


@main.command()
@click.option("--acl-user", metavar="NAME", help="Check this ACL user's rights [the URL's user].")
@click.pass_obj
@handle_errors
def doctor(opts: Options, acl_user: str | None) -> None:
    """Check what a deploy relies on, one verdict per line; exit 1 if a check fails.

    Redis version and commands, ACL rights, maxmemory-policy, TLS, the secret and whether live
    instances sign with it, clock skew, instances' release/commit metadata and versions.
    """
    from drainctl import render
    from drainctl.doctor import examine

    report = examine(opts.settings(), acl_user)
    if opts.json:
        render.emit_json(report.as_dict())
    else:
        render.doctor_table(report)
    if not report.ok:
        sys.exit(1)


@main.command("rq-worker")
@click.argument("queues", nargs=-1, required=True)
@click.option("--process-type", "-t", metavar="TYPE", help="Process type [env; default: worker].")
@click.option("--name", metavar="NAME", help="RQ worker name [default: random].")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Retire (exit 0) after N jobs.")
@click.option(
    "--max-memory-mb", type=click.FloatRange(min=1), help="Retire when resident memory reaches MB."
)
@seconds_option("--grace", default=30.0, show_default=True, help="Seconds from SIGTERM to SIGKILL.")
@seconds_option("--margin", default=5.0, show_default=True, help="Seconds kept after the drain.")
@click.option("--path", "paths", multiple=True, default=["."], help="Add to sys.path (jobs).")
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@click.pass_obj
@handle_errors
def rq_worker(
    opts: Options,
    *,
    queues: tuple[str, ...],
    process_type: str | None,
    name: str | None,
    max_jobs: int | None,
    max_memory_mb: float | None,
    grace: float,
    margin: float,
    paths: tuple[str, ...],
    burst: bool,
) -> None:
    """Run a drainable RQ worker on QUEUES (needs the rq extra: pip install drainctl[rq])."""
    from drainctl.adapters.base import WorkerOptions

    sys.path[:0] = [os.path.abspath(path) for path in paths]
    settings = opts.settings().replace(process_type=process_type)
    settings.require_app()
    try:
        from drainctl.adapters.rq import serve
    except ImportError as exc:
        from drainctl.errors import ConfigError

        raise ConfigError(f"rq is not installed ({exc}): pip install 'drainctl[rq]'") from None
    options = WorkerOptions(settings, max_jobs, max_memory_mb, grace, margin)
    serve(list(queues), options, name=name, burst=burst, verbose=opts.verbose)


# deploy, verify and hook live with the deploy package, run with oneoff; importing registers them.
from drainctl import oneoff_command as _oneoff_command  # noqa: E402, F401
from drainctl.deploy import commands as _deploy_commands  # noqa: E402, F401
