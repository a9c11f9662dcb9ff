"""``drainctl rq-worker QUEUES...``: a drainable RQ worker (``drainctl.adapters.rq``)."""

from __future__ import annotations

import os
import sys

import click

from drainctl.cli import Options, handle_errors, main, seconds_option


@main.command("rq-worker")
@click.argument("queues", nargs=-1, required=True)
@click.option(
    "--process-type",
    "-t",
    metavar="TYPE",
    show_default="worker",
    help="Process type [env DRAINCTL_PROCESS_TYPE].",
)
@click.option("--name", metavar="NAME", show_default="random", help="RQ worker name.")
@click.option(
    "--max-jobs", type=click.IntRange(min=1), metavar="N", help="Retire (exit 0) after N jobs."
)
@click.option(
    "--max-memory-mb",
    type=click.FloatRange(min=1),
    metavar="MB",
    help="Retire when resident memory reaches MB.",
)
@seconds_option("--grace", default=30.0, show_default=True, help="Seconds from SIGTERM to SIGKILL.")
@seconds_option("--margin", default=5.0, show_default=True, help="Seconds kept after the drain.")
@click.option(
    "--path",
    "paths",
    multiple=True,
    default=["."],
    metavar="DIR",
    show_default=True,
    help="Add to sys.path (jobs).",
)
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
    """Run a drainable RQ worker on QUEUES (needs the rq extra: pip install 'drainctl[rq]').

    \b
    Example (Procfile): worker: drainctl rq-worker high default --max-jobs 500
    """
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
