"""A Procfile-style worker in a real subprocess, for fault tests, fuzzing and the soak benchmark.

It is ``examples/fake_jobs.py`` with a job journal (``start N`` / ``done N`` lines), so a test
can tell that work went on, stopped, resumed, and that no job ran twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from tests.processes import spawn_loop_worker, stop


class HostProcess:
    """The parent's handle on one host subprocess."""

    def __init__(
        self,
        redis_url: str,
        app: str,
        journal: Path,
        *,
        job_seconds: float = 0.05,
        process_type: str = "worker",
        secret: str | None = None,
        log: Path | None = None,
    ) -> None:
        # A release name, so a deploy can fence it.
        env = {
            "JOB_SECONDS": str(job_seconds),
            "JOB_JOURNAL": str(journal),
            "DRAINCTL_RELEASE": "v1",
        }
        if secret is not None:
            env["DRAINCTL_SECRET"] = secret
        self.journal = journal
        self._log = open(log or os.devnull, "ab")  # noqa: SIM115  # closed in stop()
        try:
            self.process, self.instance_id = spawn_loop_worker(
                redis_url, app, process_type, stderr=self._log, **env
            )
        except BaseException:
            self._log.close()
            raise

    def rss(self) -> int:
        """Resident memory of the child, in bytes."""
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def lines(self) -> list[str]:
        """The journal so far."""
        return self.journal.read_text().splitlines() if self.journal.exists() else []

    def done(self) -> list[int]:
        """Numbers of the jobs that finished, in order."""
        return [int(line.split()[1]) for line in self.lines() if line.startswith("done ")]

    def kill(self) -> None:
        """SIGKILL: no drain, no clean deregistration."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        """End the child (its cleanup does not matter to the tests) and close its files."""
        stop(self.process)
        self._log.close()
