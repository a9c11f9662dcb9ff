"""``drainctl run -- CMD ARGS...``: a one-off process as a drainable instance (``oneoff``)."""

from __future__ import annotations

import click

from drainctl.cli import Options, handle_errors, main, seconds_option


@main.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "-t",
    "--process-type",
    metavar="TYPE",
    show_default="from DYNO, e.g. scheduler.4321, else run",
    help="Process type to register as.",
)
@click.option(
    "--on-drain",
    type=click.Choice(["wait", "term"]),
    default="wait",
    show_default=True,
    help="On a drain: wait for the command within the deadline, or SIGTERM it and wait.",
)
@click.option(
    "--when-fenced",
    type=click.Choice(["wait", "skip", "run"]),
    default="wait",
    show_default=True,
    help="If the release is fenced by a deploy as it starts: wait for the fence to lift (exit 75 "
    "if it does not within --fenced-wait), exit 0 without running, or run anyway.",
)
@seconds_option(
    "--fenced-wait", default=600.0, show_default=True, help="Bound of --when-fenced wait."
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
@click.pass_context
@handle_errors
def run(
    ctx: click.Context,
    opts: Options,
    *,
    process_type: str | None,
    on_drain: str,
    when_fenced: str,
    fenced_wait: float,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND registered as an instance (status shows it); exit with its status.

    \b
    Example: drainctl run -t scheduler -- python manage.py send_reminders
    """
    from drainctl.oneoff import OnDrain, WhenFenced, run_command

    settings = opts.settings()
    settings.require_app()
    ptype = process_type or settings.process_type or "run"
    settings = settings.replace(process_type=ptype)
    when = WhenFenced(when_fenced)
    ctx.exit(run_command(list(command), settings, OnDrain(on_drain), when, fenced_wait))
