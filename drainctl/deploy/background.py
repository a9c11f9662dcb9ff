"""``drainctl verify``: check a release pushed some other way, or the pre-push hook's push.

The hook passes what it saw before git pushed (the drained instances, the counts to expect, its
deploy id); then this verify holds the hook's deploy lock, stops (and says so) when a newer
deploy takes it over, and appends the deploy's history record when it ends.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from drainctl.channel import ControlClient
from drainctl.connection import translate_outage
from drainctl.deploy import awaiting, confirm, history
from drainctl.deploy.lock import DeployLock, Holder, read_holder, server_now
from drainctl.deploy.orchestrator import verify_release
from drainctl.deploy.plan import read_procfile, target_types
from drainctl.deploy.progress import Reporter
from drainctl.deploy.result import DeployResult
from drainctl.deploy.undo import lift_and_resume, undo_hint
from drainctl.deploy.verify import NewRelease, VerifySpec
from drainctl.errors import DrainctlError, VerifyFailed
from drainctl.fence import FenceStore
from drainctl.signing import Signer


@dataclass(frozen=True)
class VerifyRequest:
    """What ``drainctl verify`` was asked to check."""

    commit: str | None = None
    release: str | None = None
    process_types: tuple[str, ...] = ()
    stable_for: float = 10.0
    zombie_grace: float = 45.0
    timeout: float = 120.0
    resume_if_not_deployed: bool = False
    drained: frozenset[str] = frozenset()
    expect: dict[str, int] = field(default_factory=dict)
    deploy_id: str | None = None
    # The hook's, for the history record this verify appends.
    from_releases: tuple[str, ...] = ()
    phases_s: dict[str, float] = field(default_factory=dict)


def run_verify(client: ControlClient, request: VerifyRequest, reporter: Reporter) -> DeployResult:
    """Verify; raises VerifyFailed unless the release is up (or, with resume_if_not_deployed,
    nothing was deployed and the old release was resumed: then ``result.noop``).

    For a release deployed by ``drainctl release-phase``, the verdict its own instances recorded
    is the answer; while they are still at it, this watches with the release phase's numbers.
    """
    if request.release is not None and request.deploy_id is None:
        confirmed = _confirmed(client, request.release, reporter)
        if confirmed is not None:
            return confirmed
        request = _awaited(client, request)
    new = NewRelease(commit=request.commit, release=request.release, old_instances=request.drained)
    spec = VerifySpec(
        new=new,
        required=request.expect or _required(client, new, request.process_types),
        stable_for=request.stable_for,
        zombie_grace=request.zombie_grace,
        timeout=request.timeout,
    )
    result = DeployResult(
        commit=request.commit or "",
        from_releases=request.from_releases,
        phases_s=dict(request.phases_s),
    )
    signer = Signer.from_settings(client.settings)
    lock = _adopt(client, request, signer)
    started = time.monotonic()
    try:
        verdict = verify_release(
            client, spec, reporter, result, stop=lambda: lock is not None and not lock.still_mine()
        )
        if verdict.stopped:
            _say_superseded(client, reporter, signer)
    except VerifyFailed as exc:
        result.exit_code, result.error = exc.exit_code, str(exc)
        if request.resume_if_not_deployed and not result.verdict.get("new_seen"):
            _resume_old(client, new, spec, reporter, request.deploy_id)
            result.noop, result.exit_code, result.error = True, 0, None
            return result
        raise _with_undo(client, exc) from None
    finally:
        result.phases_s["verify"] = time.monotonic() - started
        if lock is not None:
            _finish(client, lock, result, signer)
    return result


def _confirmed(client: ControlClient, release: str, reporter: Reporter) -> DeployResult | None:
    """The verdict the instances of ``release`` recorded; raises VerifyFailed if it failed."""
    with translate_outage(client.settings):
        record = confirm.recorded_verdict(client, release)
    if record is None:
        return None
    result = DeployResult(
        commit=str(record.get("commit") or ""), verdict=record.get("verify") or {}
    )
    reporter.note(
        f"release {release} was confirmed by {record.get('who')} for release-phase deploy "
        f"{record.get('id')}: {record.get('verdict')}"
    )
    if record.get("error"):
        raise VerifyFailed(str(record["error"]))
    return result


def _awaited(client: ControlClient, request: VerifyRequest) -> VerifyRequest:
    """The release phase's expected counts and drained instances, if it awaits ``release``."""
    with translate_outage(client.settings):
        signer = Signer.from_settings(client.settings)
        record = awaiting.read(client.client, client.app, request.release or "", signer)
    if record is None or request.expect:
        return request
    return replace(
        request,
        expect=dict(record.expect),
        drained=request.drained | frozenset(record.drained),
    )


def _adopt(
    client: ControlClient, request: VerifyRequest, signer: Signer | None
) -> DeployLock | None:
    """The hook's deploy lock, held by this verify from now on (None outside the hook)."""
    if request.deploy_id is None:
        return None
    with translate_outage(client.settings):
        mine = Holder.me(request.deploy_id, request.commit or "", server_now(client.client))
        return DeployLock.adopt(client.client, client.app, mine, signer)


def _with_undo(client: ControlClient, exc: VerifyFailed) -> VerifyFailed:
    """The failure, naming the command that lifts the fences left in place (if any)."""
    with translate_outage(client.settings):
        fenced = FenceStore(client.client, client.app).fenced_releases()
    if not fenced:
        return exc
    hint = undo_hint(client.app, fenced)
    return VerifyFailed(f"{exc}; {', '.join(fenced)} stays fenced; to undo: {hint}")


def _say_superseded(client: ControlClient, reporter: Reporter, signer: Signer | None) -> None:
    with translate_outage(client.settings):
        holder = read_holder(client.client, client.app, signer)
        now = server_now(client.client)
    if holder is not None:
        reporter.note(f"drainctl: the deploy lock is held by {holder.describe(now)}")


def _finish(
    client: ControlClient, lock: DeployLock, result: DeployResult, signer: Signer | None
) -> None:
    """Release the lock (if still ours) and record the hook's deploy in the history."""
    try:
        with translate_outage(client.settings):
            lock.release()
            entry = result.history_record(lock.holder.deploy_id, lock.holder.who, "hook")
            history.append(client.client, client.app, entry, signer)
    except DrainctlError:
        pass  # the verdict is already printed; a Redis outage must not hide it


def _resume_old(
    client: ControlClient,
    new: NewRelease,
    spec: VerifySpec,
    reporter: Reporter,
    deploy_id: str | None,
) -> None:
    """The push never deployed: lift the fences of the releases still running and resume them."""
    types = tuple(spec.required)
    old = [r for r in client.live(frozenset(types)) if not new.matches(r.doc)]
    releases = tuple(sorted({str(r.doc.get("release")) for r in old}))
    resumed = lift_and_resume(client, releases, types, reporter, deploy_id)
    outcome = (
        "resumed it"
        if resumed
        else f"could not resume everyone: `{undo_hint(client.app, releases)}`"
    )
    reporter.note(
        f"drainctl: nothing was deployed (no instance of the new release came up): lifted the "
        f"fence on {', '.join(releases) or 'no release'} and {outcome}"
    )


def _required(client: ControlClient, new: NewRelease, chosen: tuple[str, ...]) -> dict[str, int]:
    """At least one new instance per type, or as many as the old release has now."""
    live = client.live()
    types = target_types(chosen, read_procfile(Path("Procfile")), live)
    old = Counter(r.process_type for r in live if not (new.matches(r.doc) or r.oneoff))
    return {t: max(1, old.get(t, 0)) for t in types}
