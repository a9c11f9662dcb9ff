"""``drainctl release-phase``: the deploy's drain, run by the platform before switching releases.

Heroku runs the Procfile's ``release:`` command in a one-off dyno after the build and before it
switches dynos, however the deploy started (git push, the GitHub integration, a pipeline
promotion, CI); a non-zero exit keeps the old release running. This entry point runs the deploy
engine's ``prepare`` (lock, plan, fence + drain; on any failure the fences are lifted and everyone
resumed), with the release being deployed read from the environment, and then:

- moves each fence's expiry to ``--fence-ttl`` from now: if the platform never starts the new
  release, the old instances resume by themselves when it passes;
- publishes an :class:`~drainctl.deploy.confirm.Awaiting` record that the new release's instances
  verify and answer with a verdict in the history (``drainctl.deploy.confirm``);
- hands the deploy lock over (phase verify) and records the deploy as ``awaiting``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.connection import translate_outage
from drainctl.deploy import awaiting
from drainctl.deploy.draining import keep_fences
from drainctl.deploy.lock import Holder, read_holder, server_now
from drainctl.deploy.orchestrator import Deployment
from drainctl.deploy.plan import UNKNOWN_RELEASE, DeployOptions, Incoming, IncomingSource, Plan
from drainctl.deploy.progress import Reporter, counts_text
from drainctl.deploy.result import DeployResult
from drainctl.errors import ConfigError, DrainctlError

SOURCE = "release-phase"


def incoming_from(settings: Settings) -> IncomingSource:
    """The release being deployed, from the release dyno's own metadata; ConfigError without."""
    release = settings.release
    if release == UNKNOWN_RELEASE:
        raise ConfigError(
            "no release to deploy: set DRAINCTL_RELEASE, or enable Heroku's dyno metadata "
            "(heroku labs:enable runtime-dyno-metadata) for HEROKU_RELEASE_VERSION"
        )

    def incoming(options: DeployOptions, cwd: Path) -> Incoming:
        return Incoming(commit=settings.commit or "", procfile=cwd / "Procfile", release=release)

    return incoming


def release_phase(
    client: ControlClient, options: DeployOptions, reporter: Reporter, cwd: Path
) -> Deployment:
    """The deploy engine set up for a release phase (run it with :func:`run`)."""
    deployment = Deployment(
        client, options, reporter, cwd, source=SOURCE, incoming=incoming_from(client.settings)
    )
    # Known from the start: the history names it even when the release phase fails.
    deployment.result.to_releases = (client.settings.release,)
    return deployment


def run(deployment: Deployment) -> DeployResult:
    """Drain the older releases and leave the verdict to the new one; raises the DrainctlError
    that fails the release (after lifting the fences and resuming everyone)."""
    driver = _driving_deploy(deployment)
    if driver is not None:
        deployment.reporter.step(
            "done", f"{driver} drives this release and drained already: nothing to do here"
        )
        deployment.result.noop = True
        return deployment.result
    try:
        plan = deployment.prepare()
        if plan is not None:
            try:
                _settle(deployment, plan)
            except (DrainctlError, KeyboardInterrupt):
                deployment.rollback(plan)
                raise
    except BaseException:
        deployment.unlock()
        raise
    # Drained and recorded: a lock left unrefreshed only expires sooner, so an outage here does
    # not fail the release.
    with contextlib.suppress(DrainctlError):
        deployment.hand_over()
    return deployment.result


def _driving_deploy(deployment: Deployment) -> str | None:
    """The ``drainctl deploy`` (or pre-push hook) whose push of this very commit started this
    release: it holds the deploy lock and drained already, and verifies the release itself."""
    client, commit = deployment.client, deployment.client.settings.commit or ""
    with translate_outage(client.settings):
        holder = read_holder(client.client, client.app, deployment.signer)
        now = server_now(client.client)
    if holder is None or not commit or not holder.commit:
        return None
    same = holder.commit.startswith(commit) or commit.startswith(holder.commit)
    return holder.describe(now) if same else None


def _settle(deployment: Deployment, plan: Plan) -> None:
    """Drained: give the fences their window and ask the new release to confirm itself."""
    client, options, result = deployment.client, deployment.options, deployment.result
    release = plan.release or UNKNOWN_RELEASE
    result.undo = keep_fences(
        client,
        deployment.fences,
        plan.releases,
        deployment.deploy_id,
        types=plan.drain_types,
        drain_deadline=options.drain_deadline,
        reporter=deployment.reporter,
        ttl=options.fence_ttl,
    )
    record = awaiting.Awaiting(
        deploy_id=deployment.deploy_id,
        release=release,
        commit=plan.commit,
        from_releases=plan.releases,
        process_types=plan.drain_types,
        expect=plan.counts(),
        drained=tuple(sorted(deployment.drained_ids)),
        drain_deadline=options.drain_deadline,
        stable_for=options.stable_for,
        zombie_grace=options.zombie_grace,
        verify_timeout=options.verify_timeout,
        who=deployment.lock.holder.who if deployment.lock else Holder.me("", "", 0).who,
    )
    with translate_outage(client.settings):
        awaiting.publish(client.client, client.app, record, deployment.signer, options.fence_ttl)
    result.awaiting, result.to_releases = True, (release,)
    old = ", ".join(plan.releases) or "no fenced release"
    deployment.reporter.step(
        "done",
        f"drained {counts_text(result.drained) if result.drained else 'nothing'}; {release} "
        f"records its verdict once up (`drainctl history`); if it never starts, {old} resumes "
        f"by itself after {options.fence_ttl:g}s",
    )
