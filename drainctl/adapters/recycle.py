"""Recycling: a worker retires itself after so many jobs or so much resident memory.

The equivalent of Celery's ``max-tasks-per-child`` for a whole worker process: when a limit is
reached the worker stops taking jobs, lets nothing be lost, and exits 0 so the platform (Heroku,
Dokku, systemd) starts a fresh one. Memory is the process's resident set size, read once per job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

_MB = 1024 * 1024


@dataclass
class Recycler:
    """Limits after which a worker should retire; ``None`` disables a limit."""

    max_jobs: int | None = None
    max_memory_mb: float | None = None
    _process: psutil.Process = field(default_factory=psutil.Process, repr=False)

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return self.max_jobs is not None or self.max_memory_mb is not None

    def reason(self, jobs_done: int) -> str | None:
        """Why the worker should retire now, or None to keep going."""
        if self.max_jobs is not None and jobs_done >= self.max_jobs:
            return f"max_jobs reached ({jobs_done} jobs)"
        if self.max_memory_mb is not None:
            rss_mb = self._process.memory_info().rss / _MB
            if rss_mb >= self.max_memory_mb:
                return f"max_memory_mb reached ({rss_mb:.0f} MB >= {self.max_memory_mb:g} MB)"
        return None
