"""The ``drainctl`` command: parse options, call the library, render the result.

Only click is imported at start-up; redis, rich and the library load inside each command, so
``drainctl --help`` stays fast and never imports apscheduler, rq or celery.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from drainctl.__about__ import __version__
from drainctl.cli_options import (
    F,
    GlobalOptionsGroup,
    Options,
    global_options,
    handle_errors,
    help_width,
    seconds_option,
)

# deploy/commands.py builds its commands from these too.
__all__ = ["Options", "handle_errors", "main", "seconds_option"]

if TYPE_CHECKING:
    from drainctl.channel import ControlClient, Outcome
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


@click.group(
    cls=GlobalOptionsGroup,
    epilog=EXIT_CODES_HELP,
    context_settings={"terminal_width": help_width(), "help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="drainctl")
@global_options
@click.pass_context
def main(
    ctx: click.Context,
    *,
    redis_url: str | None,
    app: str | None,
    json: bool | None,
    secret: str | None,
    ssl_cert_reqs: str | None,
    ssl_ca_certs: str | None,
    verbose: bool | None,
) -> None:
    """Drain clock and worker processes over Redis before a deploy, then verify the new release.

    \b
    Example: drainctl --app myapp status
    """
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
        json=json,
        verbose=verbose,
        secret=secret,
        ssl_cert_reqs=ssl_cert_reqs,
        ssl_ca_certs=ssl_ca_certs,
    )


def _process_types(values: tuple[str, ...]) -> frozenset[str] | None:
    return frozenset(values) or None


@main.command()
@click.option("--watch", "-w", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@seconds_option(
    "--interval", default=2.0, show_default=True, help="Seconds between redraws with --watch."
)
@click.pass_obj
@handle_errors
def status(opts: Options, watch: bool, interval: float) -> None:
    """List live instances: type, dyno, release, state, jobs in flight, memory, last beat, last
    error; and the deploy in progress.

    With a secret, a heartbeat not signed with it shows as UNVERIFIED. With --json, one array
    (with --watch: one object per line, with the deploy).

    \b
    Example: drainctl status --watch
    """
    from drainctl import render
    from drainctl.status import StatusReader

    reader = StatusReader(opts.client())
    snapshot = reader.read()
    if not snapshot.records and snapshot.deploy is None:
        reader.client.require_known_app()
    if watch:
        render.watch_status(reader.read, snapshot, interval, as_json=opts.json)
    elif opts.json:
        render.emit_json([record.as_dict() for record in snapshot.records])
    else:
        render.status_table(snapshot)


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
    from drainctl.channel import Target, unverified_only
    from drainctl.errors import ConfigError, NotAcknowledged

    client = opts.client()
    if instance is not None:
        instance = _one_instance(client, instance)
    target = Target(instance_id=instance, process_types=_process_types(process_type))
    outcome = client.send(command, target=target, args=args, timeout=timeout)
    trusted = outcome.replies or outcome.missing
    if not (trusted or outcome.unverified):
        _nobody(client, instance)
    if opts.json:
        render.emit_json(render.outcome_dict(outcome))
    elif outcome.replies or outcome.missing:
        render.outcome_table(outcome)
    elif not outcome.unverified:
        click.echo("no live instances matched")
    if not trusted and outcome.unverified:
        # Only entries that fail the signature check matched: most likely another secret
        # than the listeners'. Reporting success would let `drain && git push` push undrained.
        raise ConfigError(f"{command.value}: {unverified_only(outcome.unverified)}")
    if not outcome.ok:
        parts = [f"{len(outcome.missing)} did not answer"] if outcome.missing else []
        parts += [f"{len(outcome.failed)} failed"] if outcome.failed else []
        raise NotAcknowledged(f"{command.value}: " + ", ".join(parts))
    return outcome


def _one_instance(client: ControlClient, prefix: str) -> str:
    """The id ``--instance`` names: a live instance's id, or a prefix of exactly one (a drain
    must not reach three instances because their ids share a first character)."""
    from drainctl.errors import ConfigError

    if not prefix:
        raise ConfigError("--instance needs an instance id (or a prefix of one)")
    ids = sorted({r.instance_id for r in client.live(unverified=True)})
    matches = [i for i in ids if i.startswith(prefix)]
    if len(matches) > 1:
        raise ConfigError(f"--instance {prefix!r} is ambiguous: it matches {', '.join(matches)}")
    return matches[0] if matches else prefix


def _nobody(client: ControlClient, instance: str | None) -> None:
    """Nothing matched: a mistyped app or instance is an error (exit 2), an idle app is not."""
    from drainctl.errors import ConfigError

    client.require_known_app()
    if instance:
        raise ConfigError(f"no live instance matches --instance {instance!r}")


def targeting(func: F) -> F:
    """The options shared by commands that address instances."""
    func = click.option(
        "--instance", metavar="ID", help="Only this instance (its id, or a prefix of one only)."
    )(func)
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
    """Round-trip time to each instance: its own, even when replies are read together.

    \b
    Example: drainctl ping -t worker
    """
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
@seconds_option(
    "--timeout", show_default="deadline + 5", help="Seconds to wait for acknowledgements."
)
@click.pass_obj
@handle_errors
def drain(
    opts: Options,
    process_type: tuple[str, ...],
    instance: str | None,
    deadline: float,
    timeout: float | None,
) -> None:
    """Stop new work and wait for every targeted instance to acknowledge its drain.

    \b
    Example: drainctl drain -t worker --deadline 25
    """
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
    """Let drained instances take work again.

    \b
    Example: drainctl resume -t worker
    """
    from drainctl.protocol import Command

    _command(opts, Command.RESUME, process_type=process_type, instance=instance, timeout=timeout)


@main.command()
@click.option(
    "--acl-user",
    metavar="NAME",
    show_default="the URL's user",
    help="Check this ACL user's rights.",
)
@click.pass_obj
@handle_errors
def doctor(opts: Options, acl_user: str | None) -> None:
    """Check what a deploy relies on, one verdict per line; exit 1 if a check fails.

    Redis version and commands, ACL rights, maxmemory-policy, TLS, the secret and whether live
    instances sign with it, clock skew, instances' release/commit metadata and versions.

    \b
    Example: drainctl doctor --acl-user drainctl-cli
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


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (click's shell completion).

    \b
    Example: eval "$(drainctl completion bash)"    # in ~/.bashrc
    """
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # the Choice above lists only shells click knows
    click.echo(complete(main, {}, "drainctl", "_DRAINCTL_COMPLETE").source())


# deploy, verify and hook live with the deploy package, run with oneoff, rq-worker with its
# adapter; importing registers them.
from drainctl import oneoff_command as _oneoff_command  # noqa: E402, F401
from drainctl.adapters import rq_command as _rq_command  # noqa: E402, F401
from drainctl.deploy import commands as _deploy_commands  # noqa: E402, F401
