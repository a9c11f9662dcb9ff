"""The plan: which live instances a deploy drains, what it pushes, and what it expects after."""

from __future__ import annotations

import os
import re
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drainctl.deploy import gitrepo
from drainctl.deploy.oneoffs import OneOffs
from drainctl.fence import DEFAULT_FENCE_TTL
from drainctl.registry import InstanceRecord

# Process types a deploy does not drain by default: web has its own connection draining, and
# release runs once per deploy.
NOT_DRAINED = frozenset({"web", "release"})
UNKNOWN_RELEASE = "unknown"
_NUMBERED = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class DeployOptions:
    """Every knob of ``drainctl deploy`` (the CLI flags), with their defaults."""

    remote: str = "heroku"
    ref: str = "HEAD:main"
    push_cmd: str | None = None
    process_types: tuple[str, ...] = ()
    drain_deadline: float = 25.0
    ack_timeout: float | None = None
    verify_timeout: float = 120.0
    stable_for: float = 10.0
    zombie_grace: float = 45.0
    fence_ttl: float = DEFAULT_FENCE_TTL
    # Seconds to wait for another deploy's lock before giving up (exit 7).
    wait_lock: float = 0.0
    # Push even when no instance is there to drain (a first deploy); else that is an error.
    allow_empty: bool = False
    # Running one-off processes (drainctl run): drained and awaited, or left alone.
    one_offs: OneOffs = OneOffs.WAIT

    @property
    def ack_wait(self) -> float:
        """Seconds to wait for drain acknowledgements (default: the deadline plus 5)."""
        return self.ack_timeout if self.ack_timeout is not None else self.drain_deadline + 5


@dataclass(frozen=True)
class Incoming:
    """What a deploy brings: its commit, its Procfile, and its release name when known before it
    runs (the release phase knows it; a push learns it from the new instances)."""

    commit: str
    procfile: Path
    release: str | None = None


# How an entry point learns what it deploys (git for deploy and the hook, the environment for the
# release phase); called once the deploy options are known.
IncomingSource = Callable[["DeployOptions", Path], Incoming]


@dataclass(frozen=True)
class Plan:
    """What the deploy will do, decided before anything is touched."""

    commit: str
    process_types: tuple[str, ...]
    instances: tuple[InstanceRecord, ...]
    missing_types: tuple[str, ...]
    # Targeted instances already known gone (stale beat, dead process): not waited for.
    stale: tuple[InstanceRecord, ...] = ()
    # The new release's name, when known beforehand (the release phase).
    release: str | None = None
    # Live one-off processes (drainctl run) of the releases replaced, listed apart: never
    # expected on the new release. ``oneoffs_drained`` are drained and awaited (all of them
    # under --one-offs wait; under ignore only those of a type drained anyway: fences are by
    # type); the rest are left alone.
    oneoffs: tuple[InstanceRecord, ...] = ()
    oneoffs_drained: frozenset[str] = frozenset()

    @property
    def to_drain(self) -> tuple[InstanceRecord, ...]:
        """Every instance drained and awaited: the planned ones and the one-offs drained."""
        return self.instances + tuple(
            r for r in self.oneoffs if r.instance_id in self.oneoffs_drained
        )

    @property
    def ignored(self) -> tuple[InstanceRecord, ...]:
        """One-offs left running: not drained, not fenced, not waited for."""
        return tuple(r for r in self.oneoffs if r.instance_id not in self.oneoffs_drained)

    @property
    def drain_types(self) -> tuple[str, ...]:
        """The types drained and fenced: the process types plus those of the one-offs drained."""
        extra = {r.process_type for r in self.to_drain} - set(self.process_types)
        return self.process_types + tuple(sorted(extra))

    @property
    def releases(self) -> tuple[str, ...]:
        """The releases being replaced (each gets a fence, stale instances' too: one that comes
        back must stay drained); ``unknown`` cannot be fenced."""
        found = {str(r.doc.get("release")) for r in self.to_drain + self.stale}
        return tuple(sorted(found - {UNKNOWN_RELEASE, "None"}))

    def counts(self) -> dict[str, int]:
        """Instances to drain per process type (0 for expected types that have none): what the
        new release must bring back, so one-offs are not counted."""
        counts = Counter(r.process_type for r in self.instances)
        return {t: counts.get(t, 0) for t in self.process_types}


def read_procfile(path: Path) -> dict[str, str]:
    """``type: command`` lines of a Procfile, in order; blank lines and comments skipped."""
    entries: dict[str, str] = {}
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


def target_types(
    chosen: tuple[str, ...], procfile: dict[str, str], live: list[InstanceRecord]
) -> tuple[str, ...]:
    """The process types to drain: the chosen ones, else the Procfile's non-web, else those of
    the live instances that are not one-offs (listed apart: ``--one-offs``)."""
    if chosen:
        return tuple(dict.fromkeys(chosen))
    from_procfile = [t for t in procfile if t not in NOT_DRAINED]
    if from_procfile:
        return tuple(from_procfile)
    return tuple(sorted({r.process_type for r in live if not r.oneoff} - NOT_DRAINED))


def gone_reason(record: InstanceRecord) -> str | None:
    """Why an instance still listed is known to be gone, or None if it may answer.

    Stale: no beat for two intervals (a SIGTERMed or SIGKILLed process whose entry has not
    expired yet). Or its host is this machine and its pid no longer exists.
    """
    if record.stale:
        return f"last beat {record.age:.0f}s ago"
    pid = record.doc.get("pid")
    if record.doc.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"process {pid} gone"
        except OSError:  # it exists, owned by someone else
            return None
    return None


def older_than(release: str, new: str) -> bool:
    """Whether an instance of ``release`` is replaced by ``new``: ``v41`` by ``v42`` (and not by
    ``v40``: a newer release may already run); releases without a number, any other one."""
    numbered, newest = _NUMBERED.match(release), _NUMBERED.match(new)
    if numbered and newest:
        return int(numbered.group(1)) < int(newest.group(1))
    return release != new


def make_plan(
    commit: str,
    types: tuple[str, ...],
    live: list[InstanceRecord],
    release: str | None = None,
    one_offs: OneOffs = OneOffs.WAIT,
) -> Plan:
    """Pure: the plan from the incoming commit (and release, if known), the target types and the
    live instances; with a release, only instances of older releases are drained. One-offs are
    listed apart (``oneoffs``); ``one_offs`` says which of them are drained."""
    older = [r for r in live if release is None or older_than(str(r.doc.get("release")), release)]
    alive = [r for r in older if gone_reason(r) is None]
    # Fences are per release and type: a one-off of a type drained anyway is drained with it.
    drained_oneoffs = {
        r.instance_id
        for r in older
        if r.oneoff and (one_offs is OneOffs.WAIT or r.process_type in types)
    }
    instances = tuple(r for r in alive if r.process_type in types and not r.oneoff)
    oneoffs = tuple(r for r in alive if r.oneoff)
    present = {r.process_type for r in instances}
    present |= {r.process_type for r in oneoffs if r.instance_id in drained_oneoffs}
    return Plan(
        commit=commit,
        process_types=types,
        instances=instances,
        missing_types=tuple(t for t in types if t not in present),
        stale=tuple(
            r
            for r in older
            if gone_reason(r) is not None
            and (r.instance_id in drained_oneoffs or (r.process_type in types and not r.oneoff))
        ),
        release=release,
        oneoffs=oneoffs,
        oneoffs_drained=frozenset(drained_oneoffs),
    )


def local_commit(options: DeployOptions, cwd: Path | None = None) -> tuple[Path, str]:
    """Check the work tree (and the remote, unless a push command replaces git push)."""
    root = gitrepo.toplevel(cwd)
    if options.push_cmd is None:
        gitrepo.check_remote(options.remote, root)
    return root, gitrepo.resolve(options.ref, root)


def from_git(options: DeployOptions, cwd: Path) -> Incoming:
    """What ``deploy`` and the pre-push hook push: a commit of the work tree around ``cwd``."""
    root, commit = local_commit(options, cwd)
    return Incoming(commit=commit, procfile=root / "Procfile")
