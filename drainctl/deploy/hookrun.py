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
    RefUpdate,
    VerifyArgs,
    deployed,
    parse_updates,
    pre_commit_lines,
    run_chained,
    start_verify,
)
from drainctl.deploy.oneoffs import OneOffs
from drainctl.deploy.orchestrator import Deployment
from drainctl.deploy.plan import DeployOptions
from drainctl.deploy.progress import Reporter
from drainctl.deploy.push import DEPLOY_ENV
from drainctl.deploy.undo import undo_hint
from drainctl.errors import DrainctlError, interrupt_code

BLOCKED = 1


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
    if env.get(DEPLOY_ENV):
        reporter.note(f"drainctl: deploy {env[DEPLOY_ENV]} drives this push: nothing to do here")
        return 0
    return _drain(settings, name, update, options, reporter)


def _drain(
    settings: Settings, name: str, update: RefUpdate, options: dict[str, Any], reporter: Reporter
) -> int:
    """Lock, drain and hand the lock over to a background verify; exit code for git."""
    deploy_options = DeployOptions(
        remote=name,
        ref=f"{update.local_sha}:{update.remote_ref}",
        # git itself pushes once the hook exits 0; the name only skips the remote check.
        push_cmd="git push",
        drain_deadline=options["drain_deadline"],
        ack_timeout=options["ack_timeout"],
        allow_empty=True,  # a hook must not block a push just because nothing runs yet
        one_offs=OneOffs(options.get("one_offs", OneOffs.WAIT.value)),
    )
    client = ControlClient(settings, sender="pre-push")
    deployment = Deployment(client, deploy_options, reporter, Path.cwd(), source="hook")
    try:
        plan = deployment.prepare()
    except DrainctlError as exc:
        reporter.note(f"drainctl: push blocked: {exc}")
        deployment.unlock()
        _record(deployment, exc.exit_code, str(exc))
        return BLOCKED
    except KeyboardInterrupt as exc:
        reporter.note("drainctl: interrupted; the fence was lifted and the app resumed")
        deployment.unlock()
        _record(deployment, interrupt_code(exc), "interrupted")
        return interrupt_code(exc)
    finally:
        reporter.close()
    if plan is None:  # nothing to deploy: nothing was drained
        deployment.unlock()
        return 0
    # What verify needs is taken now, before git pushes and the old instances go away.
    deployment.hand_over()
    log = start_verify(
        client.app,
        settings.redis_url,
        update.local_sha,
        VerifyArgs(
            timeout=options["verify_timeout"],
            stable_for=options["stable_for"],
            deploy_id=deployment.deploy_id,
            drained=sorted(deployment.drained_ids),
            expect=plan.counts(),
            from_releases=deployment.result.from_releases,
            phases_s=dict(deployment.result.phases_s),
        ),
    )
    undo = undo_hint(client.app, plan.releases)
    reporter.note(
        f"drainctl: drained; verifying in the background: tail -f {log} (if the push fails it "
        f"resumes the app; by hand: `{undo}`)"
    )
    return 0


def _record(deployment: Deployment, code: int, error: str) -> None:
    if deployment.lock is not None:
        deployment.record(code, error)
