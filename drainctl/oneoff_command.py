"""``drainctl run -- CMD ARGS...``: a one-off process as a drainable instance (``oneoff``)."""

from __future__ import annotations

import click

from drainctl.cli import Options, handle_errors, main


@main.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "-t",
    "--process-type",
    metavar="TYPE",
    help="Process type to register as [default: from DYNO, e.g. scheduler.4321, else run].",
)
@click.option(
    "--on-drain",
    type=click.Choice(["wait", "term"]),
    default="wait",
    show_default=True,
    help="On a drain: wait for the command within the deadline, or SIGTERM it and wait.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
@click.pass_context
@handle_errors
def run(
    ctx: click.Context,
    opts: Options,
    process_type: str | None,
    on_drain: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND registered as an instance (status shows it); exit with its status."""
    from drainctl.oneoff import OnDrain, run_command

    settings = opts.settings()
    settings.require_app()
    ptype = process_type or settings.process_type or "run"
    ctx.exit(run_command(list(command), settings.replace(process_type=ptype), OnDrain(on_drain)))
