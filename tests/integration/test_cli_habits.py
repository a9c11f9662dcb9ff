"""The CLI fits people's habits: options anywhere, -h, typos as errors, the app from git, a
live status, shell completion, a warning that never doubles an error."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
import redis
from click.testing import CliRunner

from drainctl.adapters.jobs import JobsAdapter
from drainctl.cli import main
from drainctl.config import Settings
from drainctl.gitapp import app_from_url
from drainctl.registry import known_apps
from tests.integration.conftest import StartListener


def run(settings: Settings, *args: str, app: bool = True, **env: str) -> tuple[int, str, str]:
    """The CLI in this process, with the test's Redis (and app, unless ``app=False``)."""
    where = ["--redis-url", settings.redis_url] + (["--app", str(settings.app)] if app else [])
    runner = CliRunner(env={"DRAINCTL_ALLOW_UNSIGNED": "1", **env})
    result = runner.invoke(main, [*where, *args], prog_name="drainctl")
    return result.exit_code, result.stdout, result.stderr


def spawn(settings: Settings, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """The CLI as a process, without any DRAINCTL_* of the shell but the test's Redis URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRAINCTL_", "HEROKU_"))}
    env |= {"DRAINCTL_REDIS_URL": settings.redis_url, "DRAINCTL_ALLOW_UNSIGNED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "drainctl", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_global_options_work_after_the_command(
    settings: Settings, start_listener: StartListener
) -> None:
    """`status --json`, `ping --json -v`, `--app` after the command: as before it."""
    start_listener("worker")
    result = CliRunner(env={"DRAINCTL_ALLOW_UNSIGNED": "1"}).invoke(
        main, ["status", "--json", "--redis-url", settings.redis_url, "--app", str(settings.app)]
    )
    assert result.exit_code == 0, result.stderr
    assert [row["process_type"] for row in json.loads(result.stdout)] == ["worker"]
    root = logging.getLogger()
    level = root.level
    try:
        code, out, _ = run(settings, "ping", "--json", "-v")
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(level)
    assert code == 0
    assert json.loads(out)["ok"] is True


def test_global_options_after_hook_subcommands(settings: Settings, tmp_path: Path) -> None:
    """`hook install --json -v` and `hook uninstall --json`: the global options after a command
    of a group too, and --json output that is JSON."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    said = []
    for args in (
        ("hook", "install", "--json", "-v", "--app", "x"),
        ("hook", "uninstall", "--json"),
    ):
        process = spawn(settings, *args, cwd=tmp_path)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        said.append(json.loads(out)["message"])
    hook = tmp_path / ".git" / "hooks" / "pre-push"
    assert said == [f"installed {hook}", f"removed {hook}"]


def test_unfence_json(settings: Settings, start_listener: StartListener) -> None:
    """`unfence --json` is one JSON object, also when no fence was set."""
    start_listener("worker")
    code, out, _ = run(settings, "unfence", "--json")
    assert (code, json.loads(out)) == (0, {"lifted": []})


def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command users see (hidden ones are git's), groups and their subcommands."""
    paths = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
    return paths


def lookup(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", [(), *command_paths()], ids=lambda p: " ".join(p) or "main")
def test_dash_h_everywhere_with_an_example(settings: Settings, path: tuple[str, ...]) -> None:
    """-h shows every command's help with an example; durations are SECONDS; defaults are all
    click's ``[default: ...]``, never written into the help text by hand."""
    code, out, _ = run(settings, *path, "-h")
    assert code == 0
    assert out.startswith(f"Usage: drainctl {' '.join(path)}".rstrip())
    assert "Example" in out
    for param in lookup(path).params:
        if not isinstance(param, click.Option):
            continue
        assert "default" not in (param.help or "").lower(), param.name
        if type(param.type) is click.types.FloatParamType:  # a FloatRange is in other units
            assert param.metavar == "SECONDS", param.name
    if path[-1:] in (("ping",), ("drain",), ("resume",)):
        assert "--timeout SECONDS" in out


def test_every_command_is_covered() -> None:
    """The walk above sees the commands the README names."""
    assert {"status", "ping", "drain", "resume", "deploy", "release-phase", "verify", "unfence",
            "history", "hook", "run", "doctor", "rq-worker", "completion"} <= {
        path[0] for path in command_paths()
    }  # fmt: skip
    assert ("hook", "install") in command_paths()


def test_unknown_app_exits_2_naming_known_apps(
    settings: Settings, start_listener: StartListener, redis_client: redis.Redis
) -> None:
    """An app no listener ever registered: one line, exit 2, the known apps; an app whose
    instances are all gone is not an error."""
    start_listener("worker")
    for command in ("status", "ping", "unfence", "history"):
        code, _, err = run(settings, command, "--app", "nosuchapp")
        assert code == 2
        (line,) = err.splitlines()
        assert line.startswith(
            "drainctl: unknown app 'nosuchapp': no instance of it registered on this Redis in "
            "the last day; known apps: "
        )
    # The session's Redis knows every test's app: the error names ten, then how many more.
    known = known_apps(redis_client)
    assert settings.app in known
    expected = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
    assert line.endswith(f"known apps: {expected}")
    idle = f"{settings.app}-idle"
    start_listener("worker", app=idle).stop()
    code, out, _ = run(settings, "status", "--app", idle)
    assert (code, out) == (0, "no live instances\n")


def test_an_instance_prefix_must_name_one_instance(
    settings: Settings, start_listener: StartListener
) -> None:
    """An empty --instance or a prefix that several ids share: exit 2 and nothing drained; a
    prefix of one id alone drains that one."""
    listeners = [start_listener("worker") for _ in range(20)]
    by_first: dict[str, list[str]] = {}
    for listener in listeners:
        by_first.setdefault(listener.identity.instance_id[0], []).append(
            listener.identity.instance_id
        )
    shared = next(ids for ids in by_first.values() if len(ids) > 1)  # 20 ids, 16 hex digits
    code, _, err = run(settings, "drain", "--instance", shared[0][0])
    assert code == 2
    matches = ", ".join(sorted(shared))
    assert (
        err.strip() == f"drainctl: --instance {shared[0][0]!r} is ambiguous: it matches {matches}"
    )
    code, _, err = run(settings, "drain", "--instance", "")
    assert (code, err.strip()) == (
        2,
        "drainctl: --instance needs an instance id (or a prefix of one)",
    )
    assert {listener.state.value for listener in listeners} == {"running"}
    one = listeners[0].identity.instance_id
    code, out, _ = run(settings, "--json", "drain", "--instance", one[:8])
    assert code == 0
    assert [r["instance"]["instance_id"] for r in json.loads(out)["replies"]] == [one]


def test_unknown_instance_exits_2(settings: Settings, start_listener: StartListener) -> None:
    """--instance that matches no live instance: exit 2 instead of a silent success."""
    start_listener("worker")
    code, _, err = run(settings, "ping", "--instance", "nosuch")
    assert code == 2
    assert err.strip() == "drainctl: no live instance matches --instance 'nosuch'"


def test_unsigned_warning_once_after_success_never_on_error(
    settings: Settings, start_listener: StartListener
) -> None:
    """Without a secret: one warning after a command that worked; none with
    DRAINCTL_ALLOW_UNSIGNED=1; none added to a one-line error."""
    start_listener("worker")
    code, _, err = run(settings, "ping", DRAINCTL_ALLOW_UNSIGNED="0")
    assert code == 0
    assert err.count("unauthenticated") == 1
    assert "DRAINCTL_ALLOW_UNSIGNED=1 silences this" in err
    code, _, err = run(settings, "ping")
    assert (code, err) == (0, "")
    code, _, err = run(settings, "ping", "--instance", "nosuch", DRAINCTL_ALLOW_UNSIGNED="0")
    assert code == 2
    assert len(err.splitlines()) == 1


def test_app_inferred_from_the_heroku_remote(
    settings: Settings, start_listener: StartListener, tmp_path: Path
) -> None:
    """No --app, no DRAINCTL_APP: the app of the heroku git remote, said on stderr."""
    start_listener("worker")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    url = f"https://git.heroku.com/{settings.app}.git"
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "heroku", url], check=True)
    with spawn(settings, "status", "--json", cwd=tmp_path) as proc:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"drainctl: app {settings.app} (from the heroku git remote)" in err
    assert len(json.loads(out)) == 1


def test_heroku_remote_urls() -> None:
    """Both URL forms the heroku CLI writes; anything else is not a Heroku app."""
    assert app_from_url("https://git.heroku.com/my-app.git") == "my-app"
    assert app_from_url("git@heroku.com:my-app.git") == "my-app"
    assert app_from_url("git@github.com:me/my-app.git") is None


def test_completion_scripts(settings: Settings) -> None:
    """click's completion script for each shell, wired to drainctl."""
    for shell in ("bash", "zsh", "fish"):
        code, out, _ = run(settings, "completion", shell)
        assert code == 0
        assert "_DRAINCTL_COMPLETE" in out
    code, _, err = run(settings, "completion", "tcsh")
    assert code == 2
    assert "tcsh" in err


def test_status_watch_redraws_in_a_stable_order_with_last_error(
    settings: Settings, start_listener: StartListener
) -> None:
    """--watch redraws until Ctrl-C (exit 130); rows sorted by type and dyno; the last job
    error shows; piped, each reading is a block under its time."""
    jobs = JobsAdapter()
    start_listener("worker", adapter=jobs, dyno="worker.2")
    start_listener("worker", dyno="worker.1")
    start_listener("clock", dyno="clock.1")
    job = jobs.start("report")
    assert job is not None
    with job:
        raise RuntimeError("disk full")
    proc = spawn(settings, "--app", str(settings.app), "status", "--watch", "--interval", "0.2")
    assert proc.stdout is not None
    blocks: list[list[str]] = []
    try:
        while len(blocks) < 3 or "disk full" not in "".join(blocks[-1]):
            line = proc.stdout.readline()
            assert line, "status --watch ended"
            if line.startswith("== "):
                blocks.append([])
            elif line.strip() and blocks:
                blocks[-1].append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)  # reads both pipes to the end: no writer left blocked
    assert proc.returncode == 130
    header, *rows = blocks[-1]
    assert "last error" in header
    assert [row.split()[1] for row in rows] == ["clock.1", "worker.1", "worker.2"]
    assert "RuntimeError: disk full" in rows[2]
