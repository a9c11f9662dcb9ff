"""Showing a deploy as it happens: a live table on a terminal, plain lines otherwise.

The orchestrator talks to a :class:`Reporter`; ``reporter(live=...)`` picks the rich display
(one row per instance, redrawn in place) or plain line-by-line output, which prints a row only
when it changed, for logs, CI and ``--json`` (where it goes to stderr).
"""

from __future__ import annotations

import sys
from dataclasses import astuple, dataclass
from typing import Any, Protocol, TextIO

from drainctl.deploy.verify import Seen
from drainctl.protocol import Reply
from drainctl.registry import InstanceRecord

HEADERS = ("type", "dyno", "instance", "release", "state", "detail")


@dataclass(frozen=True)
class Row:
    """One instance as shown: who it is and where it stands."""

    process_type: str
    dyno: str
    instance_id: str
    release: str
    state: str
    detail: str = ""

    @classmethod
    def of(cls, doc: dict[str, Any], state: str | None = None, detail: str = "") -> Row:
        """A row from a heartbeat document or a reply's instance."""
        return cls(
            process_type=str(doc.get("process_type", "?")),
            dyno=str(doc.get("dyno") or "-"),
            instance_id=str(doc.get("instance_id", "?")),
            release=str(doc.get("release", "?")),
            state=state or str(doc.get("state", "?")),
            detail=detail,
        )

    @classmethod
    def of_reply(cls, reply: Reply) -> Row:
        """A row from a drain or resume reply: its state, or FAILED and why."""
        detail = reply.error or ""
        if not detail and "duration_s" in reply.data:
            detail = (
                f"finished {len(reply.data.get('finished', []))}, handed back "
                f"{len(reply.data.get('handed_back', []))} in {reply.data['duration_s']:.2f}s"
            )
        return cls.of(reply.instance, reply.state if reply.ok else "FAILED", detail)

    @classmethod
    def of_record(cls, record: InstanceRecord) -> Row:
        """A row from a registry record."""
        return cls.of(record.doc, detail="stale" if record.stale else "")


class Reporter(Protocol):
    """What the orchestrator tells the user."""

    def step(self, name: str, text: str) -> None:
        """A new phase begins."""

    def note(self, text: str) -> None:
        """An informational line (a warning starts with ``warning:``)."""

    def rows(self, rows: list[Row]) -> None:
        """The instance table now."""

    def output(self, line: str) -> None:
        """A line of the push command's output."""

    def close(self) -> None:
        """The deploy is over: leave the last table on screen."""


class PlainReporter:
    """Line by line; a row is printed when it first appears or changes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._shown: dict[str, Row] = {}

    def step(self, name: str, text: str) -> None:
        """``== drain: ...``"""
        self._print(f"== {name}: {text}")

    def note(self, text: str) -> None:
        """The line as is."""
        self._print(text)

    def rows(self, rows: list[Row]) -> None:
        """Changed rows only."""
        for row in rows:
            if self._shown.get(row.instance_id) != row:
                self._shown[row.instance_id] = row
                self._print("   " + "  ".join(x for x in astuple(row) if x))

    def output(self, line: str) -> None:
        """Push output, indented."""
        self._print(f"   | {line.rstrip()}")

    def close(self) -> None:
        """Nothing to tidy."""

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


class RichReporter:
    """A live table redrawn in place; notes and push output scroll above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self._title = ""
        self._rows: dict[str, Row] = {}
        self.live = Live(self._render(), console=self.console, refresh_per_second=8)
        self.live.start()

    def step(self, name: str, text: str) -> None:
        """Print the phase and retitle the table."""
        self._title = f"{name}: {text}"
        self.console.print(f"[bold]== {name}[/bold]: {text}")
        self.live.update(self._render())

    def note(self, text: str) -> None:
        """A line above the table (yellow for warnings)."""
        from rich.text import Text

        self.console.print(Text(text, style="yellow" if text.startswith("warning") else ""))

    def rows(self, rows: list[Row]) -> None:
        """Update the rows (instances not listed keep their last row)."""
        self._rows.update({row.instance_id: row for row in rows})
        self.live.update(self._render())

    def output(self, line: str) -> None:
        """Push output above the table."""
        from rich.text import Text

        self.console.print(Text(f"  | {line.rstrip()}", style="dim"))

    def close(self) -> None:
        """Stop redrawing; the last table stays."""
        self.live.stop()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(*HEADERS, title=self._title, title_justify="left", box=None)
        for row in self._rows.values():
            style = {"FAILED": "red", "NO REPLY": "red", "zombie": "red"}.get(row.state, "")
            table.add_row(*astuple(row), style=style)
        return table


def counts_text(counts: dict[str, int]) -> str:
    """``2 worker, 1 clock``."""
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing"


def seen_state(seen: Seen) -> str | None:
    """What to show for an instance verify has seen: gone, stale, or its own state."""
    return "gone" if seen.gone else ("stale" if seen.stale else None)


def reporter(*, live: bool, out: TextIO | None = None) -> Reporter:
    """The rich display when ``live`` (a terminal, no ``--json``), plain lines otherwise."""
    return RichReporter() if live else PlainReporter(out)
