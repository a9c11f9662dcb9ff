"""Verify a release from heartbeats: the new one up and stable, not crash-looping, and alone.

``Observations.update`` folds each registry read into what has been seen; ``decide`` is pure and
returns a :class:`Verdict`: still pending, success, or a failure naming crash-looping types (with
their last error), zombies of an old release (dyno, instance, host, pid) and missing instances.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from drainctl.registry import InstanceRecord

# A new instance that restarted or vanished more than this many times is crash-looping.
MAX_RESTARTS = 2


@dataclass(frozen=True)
class NewRelease:
    """How to tell the new release: by commit (full or abbreviated), release value, or neither
    being one of the old releases; never an instance that was drained (``old_instances``),
    whatever commit it reports (a redeploy of the live commit leaves those on the same one)."""

    commit: str | None = None
    release: str | None = None
    old_releases: frozenset[str] = frozenset()
    old_instances: frozenset[str] = frozenset()

    def matches(self, doc: dict[str, Any]) -> bool:
        """True for an instance of the new release."""
        if str(doc.get("instance_id")) in self.old_instances:
            return False
        commit, release = str(doc.get("commit") or ""), str(doc.get("release") or "")
        if (
            self.commit
            and commit
            and (commit.startswith(self.commit) or self.commit.startswith(commit))
        ):
            return True
        if self.release is not None:
            return release == self.release
        return bool(self.old_releases) and release not in self.old_releases | {"unknown", ""}


@dataclass(frozen=True)
class VerifySpec:
    """What success means: ``required`` new instances per type, stable and alone in time."""

    new: NewRelease
    required: dict[str, int]
    stable_for: float = 10.0
    zombie_grace: float = 45.0
    timeout: float = 120.0


@dataclass
class Seen:
    """One instance as last seen."""

    doc: dict[str, Any]
    first_seen: float
    stale: bool = False
    gone: bool = False


@dataclass
class Observations:
    """Everything seen of the concerned process types since verification began."""

    new: dict[str, Seen] = field(default_factory=dict)
    old: dict[str, Seen] = field(default_factory=dict)

    def update(self, records: list[InstanceRecord], spec: VerifySpec, now: float) -> None:
        """Fold one registry read in: new sightings, refreshed docs, and who vanished."""
        present: set[str] = set()
        for record in records:
            # One-offs never come back by themselves: neither evidence nor zombies.
            if record.process_type not in spec.required or record.oneoff:
                continue
            present.add(record.instance_id)
            bucket = self.new if spec.new.matches(record.doc) else self.old
            seen = bucket.setdefault(record.instance_id, Seen(record.doc, now))
            seen.doc, seen.stale, seen.gone = record.doc, record.stale, False
        for seen in (*self.new.values(), *self.old.values()):
            seen.gone = seen.gone or str(seen.doc.get("instance_id")) not in present


@dataclass(frozen=True)
class Verdict:
    """The outcome so far; ``done`` is False while still waiting."""

    done: bool
    ok: bool
    stable: dict[str, int]
    required: dict[str, int]
    crash_loops: list[dict[str, Any]] = field(default_factory=list)
    zombies: list[dict[str, Any]] = field(default_factory=list)
    # Instances of the new release seen at all: 0 means the push never deployed.
    new_seen: int = 0
    # Releases those new instances report.
    releases: tuple[str, ...] = ()
    # Watching stopped before a verdict (a newer deploy took the lock).
    stopped: bool = False

    def message(self) -> str:
        """One line saying what is wrong (or that all is well)."""
        parts = [
            f"{c['process_type']} is crash-looping ({c['restarts']} restarts; last error: "
            f"{c['last_error']})"
            for c in self.crash_loops
        ]
        parts += [
            f"zombie {z['dyno'] or z['process_type']} ({z['instance_id']}) of release "
            f"{z['release']} on {z['host'] or '?'} pid {z['pid'] or '?'} still alive"
            for z in self.zombies
        ]
        parts += [
            f"{t}: {self.stable.get(t, 0)}/{n} stable on the new release"
            for t, n in self.required.items()
            if self.stable.get(t, 0) < n and not self.ok
        ]
        if self.stopped:
            return "stopped watching: a newer deploy took the deploy lock"
        return "; ".join(parts) or "new release up, stable and alone"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ok": self.ok,
            "stable": self.stable,
            "required": self.required,
            "crash_loops": self.crash_loops,
            "zombies": self.zombies,
            "new_seen": self.new_seen,
            "releases": list(self.releases),
            "stopped": self.stopped,
        }


def decide(obs: Observations, spec: VerifySpec, elapsed: float, now: float) -> Verdict:
    """Pure: success, failure or pending, ``elapsed`` seconds after the push."""
    stable = Counter(
        str(s.doc.get("process_type")) for s in obs.new.values() if _stable(s, spec, now)
    )
    counts: dict[str, Any] = {
        "stable": dict(stable),
        "required": dict(spec.required),
        "new_seen": len(obs.new),
        "releases": tuple(sorted({str(s.doc.get("release")) for s in obs.new.values()})),
    }
    loops = crash_loops(obs, spec.required)
    if loops:
        return Verdict(done=True, ok=False, crash_loops=loops, **counts)
    zombies = [_who(s.doc) for s in obs.old.values() if not s.gone and not s.stale]
    all_stable = all(stable.get(t, 0) >= n for t, n in spec.required.items())
    if all_stable and not zombies:
        return Verdict(done=True, ok=True, **counts)
    # Zombies get their grace; missing or unstable instances get until the timeout.
    done = elapsed >= spec.timeout or (all_stable and elapsed >= spec.zombie_grace)
    late = zombies if elapsed >= spec.zombie_grace else []
    return Verdict(done=done, ok=False, zombies=late, **counts)


def crash_loops(obs: Observations, required: dict[str, int]) -> list[dict[str, Any]]:
    """New-release lineages seen with more than MAX_RESTARTS restarts or disappearances.

    A lineage is one dyno (``worker.1``); without ``DYNO`` (foreman, honcho) it is the process
    type, whose first ``required`` instances are expected rather than restarts.
    """
    lineages: dict[str, list[Seen]] = defaultdict(list)
    for seen in obs.new.values():
        lineages[_lineage(seen.doc)].append(seen)
    loops = []
    for lineage, seens in sorted(lineages.items()):
        kind = str(seens[0].doc.get("process_type"))
        expected = 1 if seens[0].doc.get("dyno") else max(1, required.get(kind, 1))
        restarts = max(len(seens) - expected, sum(s.gone for s in seens))
        if restarts > MAX_RESTARTS:
            errors = [s.doc["last_error"] for s in seens if s.doc.get("last_error")]
            loops.append(
                {
                    "process_type": kind,
                    "dyno": lineage,
                    "restarts": restarts,
                    "last_error": _error_text(errors[-1]) if errors else "none reported",
                }
            )
    return loops


def _lineage(doc: dict[str, Any]) -> str:
    return str(doc.get("dyno") or doc.get("process_type"))


def _stable(seen: Seen, spec: VerifySpec, now: float) -> bool:
    """Up for the whole window and taking work: a drained new instance is not up."""
    return (
        not seen.gone
        and not seen.stale
        and seen.doc.get("state") == "running"
        and now - seen.first_seen >= spec.stable_for
    )


def watch(
    read: Callable[[], list[InstanceRecord]],
    spec: VerifySpec,
    on_poll: Callable[[Observations, Verdict], None],
    interval: float = 0.25,
    stop: Callable[[], bool] = lambda: False,
) -> Verdict:
    """Poll the registry until the verdict is final, or ``stop()`` says to give up."""
    obs, started = Observations(), time.monotonic()
    while True:
        now = time.monotonic()
        obs.update(read(), spec, now)
        verdict = decide(obs, spec, now - started, now)
        on_poll(obs, verdict)
        if verdict.done:
            return verdict
        if stop():
            return replace(verdict, done=True, stopped=True)
        time.sleep(interval)


def _who(doc: dict[str, Any]) -> dict[str, Any]:
    fields = ("dyno", "instance_id", "process_type", "release", "host", "pid")
    return {name: doc.get(name) for name in fields}


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return str(error)
