"""``python -m drainctl.localplatform``: create, run and break a local Heroku-like platform."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from drainctl.localplatform.layout import Layout, PlatformConfig, read_json, write_json


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """A Heroku-like local platform to rehearse deploys on (not for production)."""


@main.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--app", required=True, help="HEROKU_APP_NAME of the processes.")
@click.option("--redis-url", required=True, help="REDIS_URL of the processes.")
@click.option("--grace", default=30.0, show_default=True, help="Seconds from SIGTERM to SIGKILL.")
@click.option("--backoff-base", default=0.5, show_default=True, help="First restart delay (s).")
@click.option("--backoff-max", default=10.0, show_default=True, help="Longest restart delay (s).")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="A config var (repeat).")
@click.option("--scale", multiple=True, metavar="TYPE=N", help="Processes of a type (default 1).")
def create(root: Path, **options: Any) -> None:
    """Create a platform in ROOT; push to ROOT/repo.git to deploy."""
    from drainctl.localplatform.receive import create as create_platform

    pairs = {name: [item.split("=", 1) for item in options[name]] for name in ("env", "scale")}
    config = PlatformConfig(
        **options
        | {
            "env": dict(pairs["env"]),
            "scale": {name: int(count) for name, count in pairs["scale"]},
        }
    )
    create_platform(Layout(root), config)
    click.echo(Layout(root).repo.resolve())


@main.command()
@click.argument("root", type=click.Path(exists=True, path_type=Path))
def run(root: Path) -> None:
    """Supervise the app's processes until SIGTERM or SIGINT."""
    from drainctl.localplatform.supervisor import main as supervise

    supervise(root)


@main.command()
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--zombie", multiple=True, metavar="TYPE", help="Leave one old process of TYPE running."
)
@click.option("--crash", metavar="TYPE", help="Make TYPE crash at boot in the new release.")
@click.option("--reject", is_flag=True, help="Refuse the push.")
def fault(root: Path, zombie: tuple[str, ...], crash: str | None, reject: bool) -> None:
    """Inject faults into the next push only."""
    layout = Layout(root)
    faults = read_json(layout.faults_file, {})
    chosen = {"zombie": list(zombie) or None, "crash": crash, "reject": reject or None}
    faults.update({k: v for k, v in chosen.items() if v is not None})
    write_json(layout.faults_file, faults)


@main.command()
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
def ps(root: Path, as_json: bool) -> None:
    """The app's processes, as ``heroku ps``: dyno, release, pid, state."""
    rows = read_json(Layout(root).ps_file, [])
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['dyno']:<12} {row['release']:<6} {row['pid'] or '-':<8} {row['state']}")


@main.command("pre-receive", hidden=True)
@click.argument("root", type=click.Path(exists=True, path_type=Path))
def pre_receive(root: Path) -> None:
    """The pre-receive hook."""
    from drainctl.localplatform.receive import pre_receive as hook

    sys.exit(hook(Layout(root), sys.stdout))


@main.command("receive", hidden=True)
@click.argument("root", type=click.Path(exists=True, path_type=Path))
def receive(root: Path) -> None:
    """The post-receive hook."""
    from drainctl.localplatform.receive import post_receive

    sys.exit(post_receive(Layout(root), sys.stdin.read().splitlines(), sys.stdout))


if __name__ == "__main__":
    main()
