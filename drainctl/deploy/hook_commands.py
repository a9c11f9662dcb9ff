"""The click commands ``drainctl hook install|uninstall|run``: the git pre-push hook.

Registered on the ``drainctl`` group when ``drainctl.deploy.commands`` is imported; like every
command, they import the library only when they run.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from drainctl.cli import Options, handle_errors, main, seconds_option
from drainctl.cli_options import GlobalOptionsGroup


@main.group(cls=GlobalOptionsGroup)
def hook() -> None:
    """The git pre-push hook: drain before every push to the deploy remote.

    \b
    Example: drainctl hook install && git push heroku main
    """


@hook.command()
@click.option(
    "--remote",
    default="heroku",
    show_default=True,
    metavar="REMOTE",
    help="Act on pushes to it only.",
)
@click.option("--app", metavar="NAME", show_default="DRAINCTL_APP at push time", help="App name.")
@seconds_option(
    "--drain-deadline", default=25.0, show_default=True, help="Seconds for work in flight."
)
@seconds_option(
    "--ack-timeout", show_default="deadline + 5", help="Seconds to wait for acknowledgements."
)
@seconds_option(
    "--verify-timeout", default=120.0, show_default=True, help="Seconds for the background verify."
)
@seconds_option(
    "--stable-for", default=10.0, show_default=True, help="Seconds each new instance must run."
)
@click.option(
    "--one-offs",
    type=click.Choice(["wait", "ignore"]),
    show_default="wait",
    help="Running one-offs (drainctl run): wait for them, or leave them running.",
)
@click.pass_context
@handle_errors
def install(
    ctx: click.Context, /, remote: str, app: str | None, **options: float | str | None
) -> None:
    """Write .git/hooks/pre-push (idempotent; an existing hook is chained, never overwritten).

    \b
    Example: drainctl hook install --app myapp --drain-deadline 40 --one-offs ignore
    """
    from drainctl.deploy.githook import install as install_hook

    extra = ["--app", app] if app else []
    chosen = [
        str(part)
        for name, value in options.items()
        # Only what was given goes into the hook: `hook run` has the same defaults.
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        for part in (f"--{name.replace('_', '-')}", value)
    ]
    _say(ctx.find_object(Options), install_hook(remote, extra, chosen))


@hook.command()
@click.pass_obj
@handle_errors
def uninstall(opts: Options) -> None:
    """Remove the hook and restore the one it chained, if any.

    \b
    Example: drainctl hook uninstall
    """
    from drainctl.deploy.githook import uninstall as uninstall_hook

    _say(opts, uninstall_hook())


def _say(opts: Options | None, message: str) -> None:
    """What was done: the sentence, or with --json {"message": the sentence}."""
    if opts is not None and opts.json:
        from drainctl.deploy.commands import _dumps

        click.echo(_dumps({"message": message}))
    else:
        click.echo(message)


@hook.command(hidden=True)
@click.argument("args", nargs=-1)
@click.option("--remote", default="heroku")
@seconds_option("--drain-deadline", default=25.0)
@seconds_option("--ack-timeout")
@seconds_option("--verify-timeout", default=120.0)
@seconds_option("--stable-for", default=10.0)
@click.option("--one-offs", type=click.Choice(["wait", "ignore"]), default="wait")
@click.pass_obj
@handle_errors
def run(opts: Options, /, args: tuple[str, ...], remote: str, **options: Any) -> None:
    """What git runs: chained hook, then drain (blocking the push on failure), then verify."""
    from drainctl.deploy.hookrun import run_hook
    from drainctl.deploy.progress import PlainReporter

    reporter = PlainReporter(sys.stderr)
    sys.exit(run_hook(opts.settings(), list(args), remote, options, reporter))
