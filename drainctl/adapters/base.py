"""The adapter protocol and the drain report every adapter returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from drainctl.config import Settings


@dataclass
class RunningJob:
    """A job still running when the drain deadline passed."""

    id: str
    name: str
    running_s: float


@dataclass
class DrainReport:
    """What a drain did: finished, handed back (requeued or persisted), still running."""

    finished: list[str] = field(default_factory=list)
    handed_back: list[str] = field(default_factory=list)
    still_running: list[RunningJob] = field(default_factory=list)
    duration_s: float = 0.0
    # True when a resume arrived before the drain completed.
    aborted: bool = False

    @property
    def complete(self) -> bool:
        """Nothing is left running: the process can be stopped without losing work."""
        return not self.still_running and not self.aborted

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (built by hand: ``dataclasses.asdict`` cost a drain's reply more
        than the rest of building it)."""
        return {
            "finished": list(self.finished),
            "handed_back": list(self.handed_back),
            "still_running": [
                {"id": job.id, "name": job.name, "running_s": job.running_s}
                for job in self.still_running
            ],
            "duration_s": self.duration_s,
            "aborted": self.aborted,
            "complete": self.complete,
        }


@runtime_checkable
class Adapter(Protocol):
    """What a ControlListener needs from the host's work loop."""

    def drain(self, deadline: float) -> DrainReport:
        """Stop taking work at once; wait up to ``deadline`` seconds for work in flight."""

    def resume(self) -> None:
        """Take work again; also ends a drain that is still waiting."""

    # Optional: ``drain_if_idle() -> DrainReport | None`` drains at once when nothing is in
    # flight, and returns None, changing nothing, otherwise. It must never wait (no I/O): it
    # runs on the thread that asked for the drain, the listener's serve or beat thread, instead
    # of the drain thread (see ``Lifecycle.drain``).

    def status(self) -> dict[str, Any]:
        """Counters for the heartbeat: ``in_flight``, ``jobs_done``, ``errors``, ``last_error``."""


class NullAdapter:
    """For processes with no work loop of their own: drains at once, nothing to wait for."""

    def drain(self, deadline: float) -> DrainReport:
        """Nothing runs here, so the drain is immediately complete."""
        return DrainReport()

    def drain_if_idle(self) -> DrainReport:
        """Always idle: the drain is over at once (see ``Lifecycle.drain``)."""
        return DrainReport()

    def resume(self) -> None:
        """Nothing to resume."""

    def status(self) -> dict[str, Any]:
        """No counters."""
        return {"in_flight": 0, "jobs_done": 0, "errors": 0, "last_error": None}


MAX_ERROR_CHARS = 300


@dataclass
class JobStats:
    """Counters every worker adapter keeps for the heartbeat."""

    jobs_done: int = 0
    errors: int = 0
    last_error: dict[str, Any] | None = None

    def record_error(self, exc: BaseException, job: str) -> None:
        """Count an unhandled job exception and keep its type and (truncated) message."""
        self.record_failure(job, type(exc).__name__, str(exc))

    def record_failure(self, job: str, kind: str, message: str) -> None:
        """Count a job failure known only by name, e.g. one that happened in a child process."""
        self.errors += 1
        self.last_error = {"job": job, "type": kind, "message": message[:MAX_ERROR_CHARS]}

    def as_dict(self) -> dict[str, Any]:
        """The counters as heartbeat fields (every reply to a drain or resume carries them)."""
        last_error = None if self.last_error is None else dict(self.last_error)
        return {"jobs_done": self.jobs_done, "errors": self.errors, "last_error": last_error}


@dataclass(frozen=True)
class WorkerOptions:
    """How a framework worker (RQ, Celery) runs its listener, drains on SIGTERM and recycles.

    ``settings`` default to ``Settings.from_env()``; on SIGTERM the drain deadline is
    ``grace - margin``; ``max_jobs``/``max_memory_mb`` retire the worker (exit 0) when reached.
    """

    settings: Settings | None = None
    max_jobs: int | None = None
    max_memory_mb: float | None = None
    grace: float = 30.0
    margin: float = 5.0

    def listener_settings(self) -> Settings:
        """The settings for the worker's listener; the process type defaults to ``worker``."""
        settings = self.settings if self.settings is not None else Settings.from_env()
        return settings.replace(process_type=settings.process_type or "worker")
