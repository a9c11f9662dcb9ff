"""The ``--crash TYPE`` fault: a process that registers, reports a boot error, and exits 1.

It stands in for an app that starts its listener and then dies during start-up, the way a bad
deploy crash-loops; its heartbeat carries the error so ``drainctl verify`` can show it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from drainctl.adapters.base import DrainReport

BOOT_ERROR = "crashed at boot (injected fault)"


class CrashedAdapter:
    """An adapter whose status reports the boot error."""

    def drain(self, deadline: float) -> DrainReport:
        """Nothing to drain."""
        return DrainReport()

    def resume(self) -> None:
        """Nothing to resume."""

    def status(self) -> dict[str, Any]:
        """The error the process is about to die of."""
        error = {"job": "boot", "type": "RuntimeError", "message": BOOT_ERROR}
        return {"in_flight": 0, "jobs_done": 0, "errors": 1, "last_error": error}


def main() -> None:
    """Register once (start() writes the heartbeat), then die without deregistering."""
    from drainctl.listener import ControlListener

    ControlListener.from_env(adapter=CrashedAdapter()).start()
    sys.stderr.write(f"RuntimeError: {BOOT_ERROR}\n")
    sys.stderr.flush()
    os._exit(1)


if __name__ == "__main__":
    main()
