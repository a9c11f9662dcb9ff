"""Where a local platform keeps its repository, releases, logs and state, and how it is set up."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class PlatformConfig:
    """The platform's settings, stored in ``DIR/platform.json``."""

    app: str
    redis_url: str
    grace: float = 30.0
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    python: str = ""
    env: dict[str, str] = field(default_factory=dict)
    scale: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Release:
    """One release: its number, the commit it was built from, and where its files are."""

    version: int
    commit: str
    path: str

    @property
    def name(self) -> str:
        """``vN``, as in ``HEROKU_RELEASE_VERSION``."""
        return f"v{self.version}"


@dataclass(frozen=True)
class Layout:
    """The files of one platform directory."""

    root: Path

    @property
    def repo(self) -> Path:
        """The bare repository users push to."""
        return self.root / "repo.git"

    @property
    def releases(self) -> Path:
        """Checked-out releases, one directory per version."""
        return self.root / "releases"

    @property
    def logs(self) -> Path:
        """One log file per process start."""
        return self.root / "logs"

    @property
    def config_file(self) -> Path:
        """The platform's settings."""
        return self.root / "platform.json"

    @property
    def release_file(self) -> Path:
        """The newest release, written by the post-receive hook."""
        return self.root / "release.json"

    @property
    def launched_file(self) -> Path:
        """The newest release the supervisor has started (the hook waits for it)."""
        return self.root / "launched"

    @property
    def faults_file(self) -> Path:
        """Faults to inject into the next push."""
        return self.root / "faults.json"

    @property
    def ps_file(self) -> Path:
        """The supervisor's process table (``ps``), rewritten on every change."""
        return self.root / "ps.json"

    @property
    def pid_file(self) -> Path:
        """The supervisor's pid while it runs."""
        return self.root / "supervisor.pid"

    def config(self) -> PlatformConfig:
        """Read the settings."""
        return PlatformConfig(**read_json(self.config_file, {}))

    def release(self) -> Release | None:
        """The newest release, if any push happened."""
        body = read_json(self.release_file, None)
        return Release(**body) if body else None

    def launched(self) -> int:
        """The newest release version the supervisor started (0 before any)."""
        try:
            return int(self.launched_file.read_text())
        except (OSError, ValueError):
            return 0

    def take_faults(self, *names: str) -> dict[str, Any]:
        """Read and remove the named faults: each applies to one push only."""
        faults = read_json(self.faults_file, {})
        taken = {name: faults.pop(name) for name in names if name in faults}
        if taken:
            write_json(self.faults_file, faults)
        return taken


def read_json(path: Path, default: Any) -> Any:
    """The file's JSON, or ``default`` when it does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def write_json(path: Path, value: Any) -> None:
    """Write atomically, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        json.dump(value, out)
    os.replace(tmp, path)


def config_dict(config: PlatformConfig) -> dict[str, Any]:
    """The settings as JSON-ready data."""
    return asdict(config)
