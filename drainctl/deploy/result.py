"""What a deploy did: the summary ``--json`` prints and the record its history keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The one-word verdict of a finished deploy (superseded: a newer deploy took over its verify;
# awaiting: a release phase drained, and the new release's instances will confirm it).
OK, NOOP, FAILED, INTERRUPTED, SUPERSEDED = "ok", "noop", "failed", "interrupted", "superseded"
AWAITING = "awaiting"


@dataclass
class DeployResult:
    """What happened, for the summary, ``--json`` and the deploy history."""

    exit_code: int = 0
    commit: str = ""
    phases_s: dict[str, float] = field(default_factory=dict)
    drained: dict[str, int] = field(default_factory=dict)
    # Stale instances skipped by the drain (known gone), per process type.
    gone: dict[str, int] = field(default_factory=dict)
    jobs_finished: int = 0
    jobs_handed_back: int = 0
    verdict: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    pushed: bool = False
    noop: bool = False
    from_releases: tuple[str, ...] = ()
    # What the user should run to undo a fence this deploy left in place, if any.
    undo: str | None = None
    # The release deployed, when known before any instance of it runs (the release phase).
    to_releases: tuple[str, ...] = ()
    # The release phase is done; the verdict is left to the new release's instances.
    awaiting: bool = False
    # The running one-offs the plan listed: command, run time, handling (wait or ignore).
    oneoffs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``ok``, ``noop``, ``failed``, ``interrupted``, ``superseded`` or ``awaiting``."""
        if self.exit_code in (130, 143):
            return INTERRUPTED
        if self.verdict.get("stopped"):
            return SUPERSEDED
        if self.exit_code:
            return FAILED
        if self.awaiting:
            return AWAITING
        return NOOP if self.noop else OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ok": self.exit_code == 0,
            "verdict": self.outcome,
            "exit_code": self.exit_code,
            "commit": self.commit,
            "phases_s": {k: round(v, 3) for k, v in self.phases_s.items()},
            "drained": self.drained,
            "gone": self.gone,
            "jobs_finished": self.jobs_finished,
            "jobs_handed_back": self.jobs_handed_back,
            "verify": self.verdict,
            "error": self.error,
            "pushed": self.pushed,
            "undo": self.undo,
            "one_offs": self.oneoffs,
        }

    def history_record(self, deploy_id: str, who: str, source: str) -> dict[str, Any]:
        """The entry ``drainctl history`` shows for this deploy."""
        return {
            "id": deploy_id,
            "who": who,
            "source": source,
            "from": list(self.from_releases),
            "to": self.verdict.get("releases") or list(self.to_releases),
            "commit": self.commit,
            "phases_s": {k: round(v, 3) for k, v in self.phases_s.items()},
            "verdict": self.outcome,
            "exit_code": self.exit_code,
            "error": self.error,
        }
