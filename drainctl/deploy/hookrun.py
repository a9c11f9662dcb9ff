"""What the installed pre-push hook does when git runs it."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.deploy.githook import (
    deployed,
    parse_updates,
    pre_commit_lines,
    run_chained,
    start_verify,
)
from drainctl.deploy.orchestrator import Deployment
from drainctl.deploy.plan import DeployOptions
from drainctl.deploy.progress import Reporter
from drainctl.errors import DrainctlError

BLOCKED = 1
INTERRUPTED = 130


def run_hook(
    settings: Settings,
    args: list[str],
    remote: str,
    options: dict[str, Any],
    reporter: Reporter,
    *,
    stdin: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Chained hook first; then, for pushes to ``remote`` only, drain; exit code for git."""
    env = os.environ if environ is None else environ
    source = stdin or sys.stdin
    text = "" if source.isatty() else source.read()
    lines = text.splitlines() or pre_commit_lines(env)
    name = args[0] if args else env.get("PRE_COMMIT_REMOTE_NAME", "")
    url = args[1] if len(args) > 1 else env.get("PRE_COMMIT_REMOTE_URL", "")
    code = run_chained(args, text)
    if code != 0:
        return code
    update = deployed(parse_updates(lines))
    if remote not in (name, url) or update is None:
        return 0
    deploy_options = DeployOptions(
        remote=name,
        ref=f"{update.local_sha}:{update.remote_ref}",
        # git itself pushes once the hook exits 0; the name only skips the remote check.
        push_cmd="git push",
        drain_deadline=options["drain_deadline"],
        ack_timeout=options["ack_timeout"],
    )
    client = ControlClient(settings, sender="pre-push")
    try:
        Deployment(client, deploy_options, reporter, Path.cwd()).prepare()
    except DrainctlError as exc:
        reporter.note(f"drainctl: push blocked: {exc}")
        return BLOCKED
    except KeyboardInterrupt:
        reporter.note("drainctl: interrupted; the fence was lifted and the app resumed")
        return INTERRUPTED
    finally:
        reporter.close()
    log = start_verify(client.app, settings.redis_url, update.local_sha, options["verify_timeout"])
    reporter.note(f"drainctl: drained; verifying in the background: tail -f {log}")
    return 0
