"""Who this process is: app, process type, release, dyno, and an id unique to this start."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from drainctl.config import Settings, validate_name
from drainctl.errors import ConfigError


def new_instance_id() -> str:
    """A fresh id per process start: Heroku reuses ``DYNO`` names across a deploy's overlap."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Identity:
    """The identity a listener reports in its heartbeat and in every reply."""

    app: str
    process_type: str
    instance_id: str = field(default_factory=new_instance_id)
    dyno: str | None = None
    release: str = "unknown"
    commit: str | None = None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started_at: float = field(default_factory=time.time)

    @classmethod
    def from_settings(cls, settings: Settings) -> Identity:
        """Build from settings; app and process type are required."""
        app = settings.require_app()
        if not settings.process_type:
            raise ConfigError(
                "no process type: pass process_type=, set DRAINCTL_PROCESS_TYPE, or run under DYNO"
            )
        return cls(
            app=app,
            process_type=validate_name("process type", settings.process_type),
            dyno=settings.dyno,
            release=settings.release,
            commit=settings.commit,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @property
    def label(self) -> str:
        """How people name this instance in messages: ``worker.2 (3f9a1c2b4d5e)``."""
        return f"{self.dyno or self.process_type} ({self.instance_id})"
