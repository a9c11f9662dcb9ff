"""The click commands ``deploy``, ``release-phase``, ``verify``, ``unfence`` and ``history``:
parse, call the library, render (``hook`` is in ``hook_commands``).

Registered on the ``drainctl`` group by ``drainctl.cli``; like it, they import the library only
when they run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from drainctl.cli import Options, handle_errors, main, seconds_option

if TYPE_CHECKING:
    from drainctl.channel import ControlClient
    from drainctl.deploy.progress import Reporter

T = TypeVar("T")


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
                show_default="the Procfile's non-web types, else every live type but one-offs'",
                help="Process types to drain and verify (repeatable).",
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


def one_offs_option() -> Any:
    """``--one-offs wait|ignore`` (deploy, release-phase and the pre-push hook)."""
    return click.option(
        "--one-offs",
        type=click.Choice(["wait", "ignore"]),
        default="wait",
        show_default=True,
        help="Running one-offs (drainctl run): drain them and wait for them to finish within "
        "the deadline (else the deploy fails, deploying nothing), or leave them running on the "
        "old code, unfenced.",
    )


def drain_options(func: Any) -> Any:
    """Options shared by ``deploy`` and ``release-phase``: how to drain and fence."""
    for option in reversed(
        [
            seconds_option(
                "--drain-deadline",
                default=25.0,
                show_default=True,
                help="Seconds each instance may wait for its work in flight.",
            ),
            seconds_option(
                "--ack-timeout",
                show_default="deadline + 5",
                help="Seconds to wait for every acknowledgement.",
            ),
            seconds_option(
                "--fence-ttl",
                default=900.0,
                show_default=True,
                help="Seconds after which the fence lifts itself if the deploy never returns "
                "(release-phase: if the new release never starts).",
            ),
            seconds_option(
                "--wait-lock",
                default=0.0,
                show_default="0: exit 7 at once",
                help="Seconds to wait while another deploy of the app holds the deploy lock.",
            ),
            one_offs_option(),
        ]
    ):
        func = option(func)
    return func


@main.command()
@verify_options
@click.option(
    "--remote",
    default="heroku",
    show_default=True,
    metavar="REMOTE",
    help="The git remote to push to.",
)
@click.option(
    "--ref",
    default="HEAD:main",
    show_default=True,
    metavar="REFSPEC",
    help="What to push, as git push.",
)
@click.option("--push-cmd", metavar="CMD", help="Run this shell command instead of git push.")
@drain_options
@click.option("--allow-empty", is_flag=True, help="Push even with no instance to drain.")
@click.pass_obj
@handle_errors
def deploy(opts: Options, /, app: str | None, as_json: bool, **options: Any) -> None:
    """Drain, push, verify: fence and drain the old release, push, check the new one.

    The plan lists running one-offs (drainctl run) apart, with their command and run time.

    \b
    Example: drainctl deploy --remote heroku --one-offs ignore --drain-deadline 60
    """
    from pathlib import Path

    from drainctl.deploy.orchestrator import Deployment
    from drainctl.deploy.plan import DeployOptions

    as_json = as_json or opts.json
    _deploy_options(options)
    reporter = _reporter(as_json)
    deployment = Deployment(_client(opts, app), DeployOptions(**options), reporter, Path.cwd())
    _run_recorded(deployment, deployment.run, as_json, lambda: _after_interrupt(deployment))


@main.command("release-phase")
@verify_options
@drain_options
@click.pass_obj
@handle_errors
def release_phase(opts: Options, /, app: str | None, as_json: bool, **options: Any) -> None:
    """Drain the old release from the platform's release phase (Procfile `release:`).

    Reads REDIS_URL, DRAINCTL_SECRET and the release being deployed (DRAINCTL_RELEASE, else
    HEROKU_RELEASE_VERSION or HEROKU_SLUG_COMMIT) from the environment; exits non-zero (the
    platform keeps the old release) after resuming everyone if a drain fails. The new release's
    instances verify it and record the verdict: `drainctl history`.

    \b
    Example (Procfile): release: drainctl release-phase --drain-deadline 60 --one-offs wait
    """
    from pathlib import Path

    from drainctl.deploy import release_phase as phase
    from drainctl.deploy.plan import DeployOptions

    as_json = as_json or opts.json
    _deploy_options(options)
    reporter = _reporter(as_json)
    # Nothing to drain is normal here (the first release, a scaled-down app): never refuse it.
    options["allow_empty"] = True
    deployment = phase.release_phase(
        _client(opts, app), DeployOptions(**options), reporter, Path.cwd()
    )
    _run_recorded(
        deployment,
        lambda: phase.run(deployment),
        as_json,
        lambda: "the fence was lifted and the app resumed",
    )


def _deploy_options(options: dict[str, Any]) -> None:
    """The parsed options as DeployOptions fields (in place)."""
    from drainctl.deploy.oneoffs import OneOffs

    options["process_types"] = options.pop("process_type")
    options["one_offs"] = OneOffs(options["one_offs"])


def _run_recorded(
    deployment: Any, run: Callable[[], Any], as_json: bool, after_interrupt: Callable[[], str]
) -> None:
    """Run a deploy entry point; record it in the history and print ``--json`` whatever happens."""
    from drainctl.errors import DrainctlError, interrupt_code

    code, error = 0, None
    try:
        run()
    except KeyboardInterrupt as exc:
        deployment.reporter.close()
        code, error = interrupt_code(exc), "interrupted"
        click.echo(f"drainctl: interrupted; {after_interrupt()}", err=True)
        raise
    except DrainctlError as exc:
        code, error = exc.exit_code, str(exc)
        raise
    finally:
        deployment.reporter.close()
        if deployment.lock is not None:  # a deploy stopped at the lock is no deploy of its own
            deployment.record(code, error)
        deployment.result.exit_code, deployment.result.error = code, error
        if as_json:
            click.echo(_dumps(deployment.result.as_dict()))


def _after_interrupt(deployment: Any) -> str:
    """What an interrupted deploy left behind, and the command that undoes it."""
    if not deployment.result.pushed:
        return "the fence was lifted and the app resumed"
    undo = deployment.result.undo
    kept = f"; the old release stays fenced: undo with `{undo}`" if undo else ""
    return (
        f"pushed; verify it with `drainctl verify --commit {deployment.result.commit[:12]}`{kept}"
    )


@main.command()
@verify_options
@click.option("--release", metavar="R", help="The new release is the one reporting release R.")
@click.option(
    "--commit", metavar="SHA", show_default="HEAD", help="The new release runs this commit."
)
@click.option(
    "--resume-if-not-deployed",
    is_flag=True,
    help="If no instance of the new release ever shows up (the push failed or deployed nothing), "
    "lift the deploy fence, resume the old release and exit 0 (what the pre-push hook's "
    "background verify does).",
)
@click.option("--drained", multiple=True, hidden=True, help="An instance id drained before.")
@click.option("--expect", multiple=True, hidden=True, help="TYPE=N new instances required.")
@click.option("--deploy-id", hidden=True, help="The hook deploy whose lock this verify holds.")
@click.option("--from-release", multiple=True, hidden=True, help="A release the hook drained.")
@click.option("--phase", multiple=True, hidden=True, help="NAME=SECONDS the hook spent on it.")
@click.pass_obj
@handle_errors
def verify(opts: Options, /, app: str | None, as_json: bool, **options: Any) -> None:
    """Check a release pushed some other way: up, stable, not crash-looping, no zombies.

    \b
    Example: git push heroku main && drainctl verify --verify-timeout 180
    """
    from drainctl.deploy.background import VerifyRequest, run_verify
    from drainctl.deploy.result import DeployResult
    from drainctl.errors import DrainctlError

    client = _client(opts, app)
    commit = options["commit"]
    if options["release"] is None and commit is None:
        from drainctl.deploy.gitrepo import resolve

        commit = resolve("HEAD")
    request = VerifyRequest(
        commit=commit,
        release=options["release"],
        process_types=options["process_type"],
        stable_for=options["stable_for"],
        zombie_grace=options["zombie_grace"],
        timeout=options["verify_timeout"],
        resume_if_not_deployed=options["resume_if_not_deployed"],
        drained=frozenset(options["drained"]),
        expect=_counts(options["expect"]),
        deploy_id=options["deploy_id"],
        from_releases=options["from_release"],
        phases_s=_phases(options["phase"]),
    )
    reporter, result = _reporter(as_json or opts.json), DeployResult(commit=commit or "")
    try:
        result = run_verify(client, request, reporter)
    except DrainctlError as exc:
        result.error, result.exit_code = str(exc), exc.exit_code
        raise
    finally:
        reporter.close()
        if as_json or opts.json:
            click.echo(_dumps(result.as_dict()))


def _counts(values: tuple[str, ...]) -> dict[str, int]:
    """``--expect TYPE=N`` items as a dict; a malformed one is a usage error."""
    return _pairs(values, "--expect", "TYPE=N", lambda n: int(n) if n.isdigit() else None)


def _phases(values: tuple[str, ...]) -> dict[str, float]:
    """``--phase NAME=SECONDS`` items as a dict; a malformed one is a usage error."""

    def seconds(raw: str) -> float | None:
        try:
            return float(raw)
        except ValueError:
            return None

    return _pairs(values, "--phase", "NAME=SECONDS", seconds)


def _pairs(
    values: tuple[str, ...], option: str, shape: str, parse: Callable[[str], T | None]
) -> dict[str, T]:
    pairs = {}
    for value in values:
        name, _, raw = value.partition("=")
        parsed = parse(raw) if name else None
        if parsed is None:
            raise click.BadParameter(f"{value!r} is not {shape}", param_hint=option)
        pairs[name] = parsed
    return pairs


@main.command()
@click.option("--app", metavar="NAME", help="App name [env DRAINCTL_APP].")
@click.option("--release", metavar="R", show_default="every fenced one", help="Only this release.")
@click.option(
    "--process-type", "-t", multiple=True, metavar="TYPE", help="Resume only these types."
)
@click.pass_obj
@handle_errors
def unfence(
    opts: Options, /, app: str | None, release: str | None, process_type: tuple[str, ...]
) -> None:
    """Lift a deploy fence (whichever deploy set it) and resume the instances it held.

    With --json, one object: {"lifted": [the releases that were fenced]}.

    \b
    Example: drainctl unfence --release v41
    """
    from drainctl.deploy.undo import unfence as lift

    client = _client(opts, app)
    reporter = _reporter(opts.json)
    try:
        found = lift(client, release, process_type, reporter)
    finally:
        reporter.close()
    if not found:
        client.require_known_app()
    if opts.json:
        click.echo(_dumps({"lifted": found}))
    else:
        click.echo(f"lifted the fence on {', '.join(found)}" if found else "no fence was set")


@main.command()
@click.option("--app", metavar="NAME", help="App name [env DRAINCTL_APP].")
@click.option("-n", "count", type=click.IntRange(min=1), default=10, show_default=True,
              metavar="N", help="How many deploys, newest first.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_obj
@handle_errors
def history(opts: Options, /, app: str | None, count: int, as_json: bool) -> None:
    """The app's latest deploys: who, from and to which release, how long, the verdict.

    \b
    Example: drainctl history -n 5
    """
    from drainctl import render
    from drainctl.connection import translate_outage
    from drainctl.deploy.history import recent
    from drainctl.signing import Signer

    client = _client(opts, app)
    with translate_outage(client.settings):
        records = recent(client.client, client.app, count, Signer.from_settings(client.settings))
    if not records:
        client.require_known_app()
    if as_json or opts.json:
        click.echo(_dumps(records))
    elif records:
        render.history_table(records)
    else:
        click.echo("no deploy recorded")


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


# The hook commands live beside these; importing registers them on ``main``.
from drainctl.deploy import hook_commands as _hook_commands  # noqa: E402, F401
