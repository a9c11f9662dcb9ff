"""The click commands ``deploy``, ``verify`` and ``hook``: parse, call the library, render.

Registered on the ``drainctl`` group by ``drainctl.cli``; like it, they import the library only
when they run.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from drainctl.cli import Options, handle_errors, main, seconds_option

if TYPE_CHECKING:
    from drainctl.channel import ControlClient
    from drainctl.deploy.progress import Reporter

INTERRUPTED = 130


def _client(opts: Options, app: str | None) -> ControlClient:
    from drainctl.channel import ControlClient

    return ControlClient(opts.settings().replace(app=app), sender="deploy")


def _reporter(as_json: bool) -> Reporter:
    from drainctl.deploy.progress import reporter

    live = sys.stdout.isatty() and not as_json
    return reporter(live=live, out=sys.stderr if as_json else sys.stdout)


def verify_options(func: Any) -> Any:
    """Options shared by ``deploy`` and ``verify``."""
    for option in reversed(
        [
            click.option("--app", metavar="NAME", help="App name [env DRAINCTL_APP]."),
            click.option(
                "--process-type",
                "-t",
                multiple=True,
                metavar="TYPE",
                help="Process types to drain and verify (repeatable) [default: the Procfile's "
                "non-web types, else every live type].",
            ),
            seconds_option(
                "--verify-timeout",
                default=120.0,
                show_default=True,
                help="Seconds for the new release to become stable.",
            ),
            seconds_option(
                "--stable-for",
                default=10.0,
                show_default=True,
                help="Seconds each new instance must heartbeat without restarting.",
            ),
            seconds_option(
                "--zombie-grace",
                default=45.0,
                show_default=True,
                help="Seconds old instances may live on after the push.",
            ),
            click.option("--json", "as_json", is_flag=True, help="Machine-readable summary."),
        ]
    ):
        func = option(func)
    return func


@main.command()
@verify_options
@click.option("--remote", default="heroku", show_default=True, help="The git remote to push to.")
@click.option("--ref", default="HEAD:main", show_default=True, help="What to push, as git push.")
@click.option("--push-cmd", metavar="CMD", help="Run this shell command instead of git push.")
@seconds_option(
    "--drain-deadline",
    default=25.0,
    show_default=True,
    help="Seconds each instance may wait for its work in flight.",
)
@seconds_option(
    "--ack-timeout", help="Seconds to wait for every acknowledgement [default: deadline + 5]."
)
@seconds_option(
    "--fence-ttl",
    default=900.0,
    show_default=True,
    help="Seconds after which the fence lifts itself if the deploy never returns.",
)
@click.pass_obj
@handle_errors
def deploy(opts: Options, /, app: str | None, as_json: bool, **options: Any) -> None:
    """Drain, push, verify: fence and drain the old release, push, check the new one."""
    from pathlib import Path

    from drainctl.deploy.orchestrator import Deployment
    from drainctl.deploy.plan import DeployOptions
    from drainctl.errors import DrainctlError

    as_json = as_json or opts.json
    options["process_types"] = options.pop("process_type")
    reporter = _reporter(as_json)
    deployment = Deployment(_client(opts, app), DeployOptions(**options), reporter, Path.cwd())
    try:
        deployment.run()
    except KeyboardInterrupt:
        reporter.close()
        deployment.result.exit_code, deployment.result.error = INTERRUPTED, "interrupted"
        after = (
            "verify it with `drainctl verify`"
            if deployment.result.pushed
            else ("the fence was lifted and the app resumed")
        )
        click.echo(f"drainctl: interrupted; {after}", err=True)
        sys.exit(INTERRUPTED)
    except DrainctlError as exc:
        deployment.result.error = str(exc)
        deployment.result.exit_code = _code(exc)
        raise
    finally:
        reporter.close()
        if as_json:
            click.echo(_dumps(deployment.result.as_dict()))


@main.command()
@verify_options
@click.option("--release", metavar="R", help="The new release is the one reporting release R.")
@click.option("--commit", metavar="SHA", help="The new release runs this commit [default: HEAD].")
@click.option(
    "--resume-if-not-deployed",
    is_flag=True,
    help="If no instance of the new release ever shows up (the push failed), lift the deploy "
    "fence and resume the old release (what the pre-push hook's background verify does).",
)
@click.pass_obj
@handle_errors
def verify(
    opts: Options,
    /,
    app: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Check a release pushed some other way: up, stable, not crash-looping, no zombies."""
    from drainctl.deploy.orchestrator import DeployResult, verify_release
    from drainctl.deploy.verify import NewRelease, VerifySpec
    from drainctl.errors import DrainctlError

    client = _client(opts, app)
    release, commit = options["release"], options["commit"]
    if release is None and commit is None:
        from drainctl.deploy.gitrepo import resolve

        commit = resolve("HEAD")
    new = NewRelease(commit=commit, release=release)
    spec = VerifySpec(
        new=new,
        required=_required(client, new, options["process_type"]),
        stable_for=options["stable_for"],
        zombie_grace=options["zombie_grace"],
        timeout=options["verify_timeout"],
    )
    reporter, result = _reporter(as_json or opts.json), DeployResult(commit=commit or "")
    try:
        verify_release(client, spec, reporter, result)
    except DrainctlError as exc:
        result.error, result.exit_code = str(exc), _code(exc)
        if options["resume_if_not_deployed"] and not result.verdict.get("new_seen", 1):
            _resume_old(client, new, tuple(spec.required), reporter)
        raise
    finally:
        reporter.close()
        if as_json or opts.json:
            click.echo(_dumps(result.as_dict()))


def _resume_old(client: ControlClient, new: Any, types: tuple[str, ...], reporter: Any) -> None:
    """The push never deployed: lift the fences of the releases still running and resume them."""
    from drainctl.deploy.orchestrator import lift_and_resume

    old = [r for r in client.live(frozenset(types)) if not new.matches(r.doc)]
    lift_and_resume(
        client, tuple(sorted({str(r.doc.get("release")) for r in old})), types, reporter
    )


def _required(client: ControlClient, new: Any, chosen: tuple[str, ...]) -> dict[str, int]:
    """At least one new instance per type, or as many as the old release has now."""
    from collections import Counter
    from pathlib import Path

    from drainctl.deploy.plan import read_procfile, target_types

    live = client.live()
    types = target_types(chosen, read_procfile(Path("Procfile")), live)
    old = Counter(r.process_type for r in live if not new.matches(r.doc))
    return {t: max(1, old.get(t, 0)) for t in types}


def _code(exc: Exception) -> int:
    from drainctl.cli import _exit_codes

    return next((c for cls, c in _exit_codes().items() if isinstance(exc, cls)), 1)


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


@main.group()
def hook() -> None:
    """The git pre-push hook: drain before every push to the deploy remote."""


@hook.command()
@click.option("--remote", default="heroku", show_default=True, help="Act on pushes to it only.")
@click.option("--app", metavar="NAME", help="App name [default: DRAINCTL_APP at push time].")
@seconds_option("--drain-deadline", help="Seconds for work in flight [default: 25].")
@seconds_option("--ack-timeout", help="Seconds to wait for acknowledgements.")
@seconds_option("--verify-timeout", help="Seconds for the background verify [120].")
@handle_errors
def install(remote: str, app: str | None, **timings: float | None) -> None:
    """Write .git/hooks/pre-push (idempotent; an existing hook is chained, never overwritten)."""
    from drainctl.deploy.githook import install as install_hook

    extra = ["--app", app] if app else []
    chosen = [
        str(part)
        for name, value in timings.items()
        if value is not None
        for part in (f"--{name.replace('_', '-')}", value)
    ]
    click.echo(install_hook(remote, extra, chosen))


@hook.command()
@handle_errors
def uninstall() -> None:
    """Remove the hook and restore the one it chained, if any."""
    from drainctl.deploy.githook import uninstall as uninstall_hook

    click.echo(uninstall_hook())


@hook.command(hidden=True)
@click.argument("args", nargs=-1)
@click.option("--remote", default="heroku")
@seconds_option("--drain-deadline", default=25.0)
@seconds_option("--ack-timeout")
@seconds_option("--verify-timeout", default=120.0)
@click.pass_obj
@handle_errors
def run(opts: Options, /, args: tuple[str, ...], remote: str, **options: Any) -> None:
    """What git runs: chained hook, then drain (blocking the push on failure), then verify."""
    from drainctl.deploy.hookrun import run_hook
    from drainctl.deploy.progress import PlainReporter

    reporter = PlainReporter(sys.stderr)
    sys.exit(run_hook(opts.settings(), list(args), remote, options, reporter))
