"""drainctl: drain clock and worker processes over Redis before a deploy, then verify it.

The public API is re-exported here and loaded on first use, so importing ``drainctl`` (and
running ``drainctl --help``) does not pay for redis-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from drainctl.__about__ import __version__

if TYPE_CHECKING:
    from drainctl.adapters.apscheduler import ClockAdapter
    from drainctl.adapters.base import Adapter, DrainReport, NullAdapter, RunningJob
    from drainctl.adapters.jobs import Job, JobsAdapter
    from drainctl.adapters.loop import LoopJob, LoopWorker
    from drainctl.adapters.reliable_queue import ReliableQueue
    from drainctl.channel import ControlClient, Outcome, Target
    from drainctl.config import Settings
    from drainctl.errors import (
        CommandNotRun,
        ConfigError,
        DeployLocked,
        DrainctlError,
        NotAcknowledged,
        ProtocolError,
        PushFailed,
        RedisUnavailable,
        Unauthenticated,
        VerifyFailed,
    )
    from drainctl.identity import Identity
    from drainctl.listener import ControlListener
    from drainctl.protocol import Command, Reply, Request, State

_EXPORTS = {
    "ClockAdapter": "drainctl.adapters.apscheduler",
    "Adapter": "drainctl.adapters.base",
    "DrainReport": "drainctl.adapters.base",
    "NullAdapter": "drainctl.adapters.base",
    "RunningJob": "drainctl.adapters.base",
    "Job": "drainctl.adapters.jobs",
    "JobsAdapter": "drainctl.adapters.jobs",
    "LoopJob": "drainctl.adapters.loop",
    "LoopWorker": "drainctl.adapters.loop",
    "ReliableQueue": "drainctl.adapters.reliable_queue",
    "ControlClient": "drainctl.channel",
    "Outcome": "drainctl.channel",
    "Target": "drainctl.channel",
    "Settings": "drainctl.config",
    "CommandNotRun": "drainctl.errors",
    "ConfigError": "drainctl.errors",
    "DeployLocked": "drainctl.errors",
    "DrainctlError": "drainctl.errors",
    "NotAcknowledged": "drainctl.errors",
    "ProtocolError": "drainctl.errors",
    "PushFailed": "drainctl.errors",
    "RedisUnavailable": "drainctl.errors",
    "Unauthenticated": "drainctl.errors",
    "VerifyFailed": "drainctl.errors",
    "Identity": "drainctl.identity",
    "ControlListener": "drainctl.listener",
    "Command": "drainctl.protocol",
    "Reply": "drainctl.protocol",
    "Request": "drainctl.protocol",
    "State": "drainctl.protocol",
}

__all__ = [
    "Adapter",
    "ClockAdapter",
    "Command",
    "CommandNotRun",
    "ConfigError",
    "ControlClient",
    "ControlListener",
    "DeployLocked",
    "DrainReport",
    "DrainctlError",
    "Identity",
    "Job",
    "JobsAdapter",
    "LoopJob",
    "LoopWorker",
    "NotAcknowledged",
    "NullAdapter",
    "Outcome",
    "ProtocolError",
    "PushFailed",
    "RedisUnavailable",
    "ReliableQueue",
    "Reply",
    "Request",
    "RunningJob",
    "Settings",
    "State",
    "Target",
    "Unauthenticated",
    "VerifyFailed",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'drainctl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
