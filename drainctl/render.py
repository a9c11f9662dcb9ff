"""Terminal and JSON output for the CLI (rich is imported only when a table is drawn)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from drainctl.channel import Outcome
from drainctl.registry import InstanceRecord

if TYPE_CHECKING:
    from drainctl.doctor import Report
    from drainctl.status import Snapshot

# The width of the last error in the status table (the whole of it is in --json).
LAST_ERROR_CHARS = 48


# What a terminal would interpret: never written as is (registry entries are anyone's text).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(value, default=str) + "\n")


def outcome_dict(outcome: Outcome) -> dict[str, Any]:
    """An outcome as plain data: replies, missing instances, elapsed time."""
    return {
        "command": outcome.command.value,
        "ok": outcome.ok,
        "elapsed_ms": round(outcome.elapsed * 1000, 3),
        "replies": [
            {
                "instance": reply.instance,
                "state": reply.state,
                "ok": reply.ok,
                "error": reply.error,
                "data": reply.data,
            }
            for reply in outcome.replies
        ],
        "latency_ms": {k: round(v * 1000, 3) for k, v in outcome.latency.items()},
        "missing": [_who(record) for record in outcome.missing],
        "unverified": [_who(r) | {"unverified": r.doubt} for r in outcome.unverified],
    }


def status_table(snapshot: Snapshot) -> None:
    """The deploy in progress, then the live instances as a table (or "no live instances")."""
    _console().print(_status_renderable(snapshot))


def watch_status(
    read: Callable[[], Snapshot], first: Snapshot, interval: float, *, as_json: bool
) -> NoReturn:
    """Redraw the status every ``interval`` seconds until interrupted: in place on a terminal,
    a block per reading when piped, one JSON object per line with ``as_json``."""
    snapshot = first
    if as_json:
        while True:
            emit_json(_snapshot_dict(snapshot))
            sys.stdout.flush()
            time.sleep(interval)
            snapshot = read()
    console = _console()
    if not console.is_terminal:
        while True:
            console.print(f"== {_clock(snapshot.at)}")
            console.print(_status_renderable(snapshot))
            sys.stdout.flush()
            time.sleep(interval)
            snapshot = read()
    from rich.live import Live

    with Live(console=console, auto_refresh=False) as live:
        while True:
            live.update(_status_renderable(snapshot, clock=True), refresh=True)
            time.sleep(interval)
            snapshot = read()


def _snapshot_dict(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "at": snapshot.at,
        "deploy": snapshot.deploy,
        "instances": [record.as_dict() for record in snapshot.records],
    }


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at)) + " UTC"


def _status_renderable(snapshot: Snapshot, *, clock: bool = False) -> Any:
    from rich.console import Group
    from rich.text import Text

    lines: list[Any] = [Text(f"{_clock(snapshot.at)} (Ctrl-C to stop)")] if clock else []
    if snapshot.deploy is not None:
        lines.append(Text(f"deploy in progress: {snapshot.deploy}"))
    if not snapshot.records:
        return Group(*lines, Text("no live instances"))
    return Group(*lines, _status_grid(snapshot.records))


def _status_grid(records: list[InstanceRecord]) -> Any:
    checked = any(r.verified is not None for r in records)
    details = any("lease" in r.doc or "command" in r.doc for r in records)
    # Columns only some instances fill are shown when one does: piped tables stay narrow.
    errors = any(r.doc.get("last_error") for r in records)
    rows = [
        [
            r.process_type,
            str(r.doc.get("dyno") or "-"),
            r.instance_id,
            str(r.doc.get("release")),
            str(r.doc.get("state")) if r.trusted else "UNVERIFIED",
            str(r.doc.get("in_flight", "-")),
            f"{r.doc.get('memory_mb', '-')} MB",
            f"{r.age:.1f}s" + (" STALE" if r.stale else ""),
            *([_last_error(r.doc.get("last_error"))] if errors else []),
            *([detail_cell(r.doc)] if details else []),
            *([_signature(r)] if checked else []),
        ]
        for r in records
    ]
    headers = ["type", "dyno", "instance", "release", "state", "in flight", "memory", "last beat"]
    headers += (["last error"] if errors else []) + (["detail"] if details else [])
    return _build_table(headers + (["signature"] if checked else []), rows)


def _last_error(value: object) -> str:
    """``Type: message`` of the last failed job (cut short), or "-"."""
    if not isinstance(value, dict):
        return "-"
    text = f"{value.get('type', '?')}: {value.get('message', '')}"
    return text if len(text) <= LAST_ERROR_CHARS else text[: LAST_ERROR_CHARS - 3] + "..."


def detail_cell(doc: dict[str, Any]) -> str:
    """A clock's (APScheduler or Celery beat) lease standing, token and next due run; a one-off's
    command and run time; "-" for others."""
    if "command" in doc:
        return f"{doc.get('command')} ({doc.get('run_s')}s)"
    if "lease" not in doc:
        return "-"
    token = doc.get("fencing_token")
    cell = str(doc.get("lease")) + (f" token {token}" if token is not None else "")
    next_due = doc.get("next_due")
    return cell + (f" next {next_due}" if next_due else "")


def _signature(record: InstanceRecord) -> str:
    return "ok" if record.verified else f"unverified: {record.doubt}"


def history_table(records: Iterable[dict[str, Any]]) -> None:
    """Deploy history records (newest first) as a table."""
    rows = [
        [
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(r.get("at") or 0))),
            str(r.get("id")),
            str(r.get("who")),
            str(r.get("source")),
            ",".join(r.get("from") or []) or "-",
            ",".join(r.get("to") or []) or "-",
            str(r.get("commit") or "")[:12],
            f"{sum((r.get('phases_s') or {}).values()):.1f}s",
            f"{r.get('verdict')} ({r.get('exit_code')})",
        ]
        for r in records
    ]
    _table(["at (UTC)", "id", "who", "via", "from", "to", "commit", "took", "verdict"], rows)


def outcome_table(outcome: Outcome) -> None:
    """One row per instance: answered (with its round trip and report) or missing."""
    rows = []
    for reply in outcome.replies:
        rtt = f"{outcome.latency[reply.instance_id] * 1000:.2f} ms"
        detail = reply.error or _summary(reply.data)
        rows.append(
            [
                str(reply.instance.get("process_type")),
                str(reply.instance.get("dyno") or "-"),
                reply.instance_id,
                reply.state,
                "ok" if reply.ok else "FAILED",
                rtt,
                detail,
            ]
        )
    for record in outcome.missing:
        who = _who(record)
        rows.append(
            [who["process_type"], who["dyno"] or "-", who["instance_id"], "?", "NO REPLY", "-", ""]
        )
    for record in outcome.unverified:
        who = _who(record)
        detail = f"not awaited: heartbeat unverified ({record.doubt})"
        rows.append([who["process_type"], who["dyno"] or "-", who["instance_id"], "?", "UNVERIFIED",
                     "-", detail])  # fmt: skip
    _table(["type", "dyno", "instance", "state", "result", "round trip", "detail"], rows)


def doctor_table(report: Report) -> None:
    """One row per check: what, the verdict, and the detail."""
    rows = [[f.check, f.verdict.value, f.detail] for f in report.findings]
    _table(["check", "verdict", "detail"], rows)


def _who(record: InstanceRecord) -> dict[str, Any]:
    return {
        "instance_id": record.instance_id,
        "process_type": record.process_type,
        "dyno": record.doc.get("dyno"),
        "host": record.doc.get("host"),
        "pid": record.doc.get("pid"),
    }


def _summary(data: dict[str, Any]) -> str:
    duration = data.get("duration_s")
    finished, handed_back = data.get("finished"), data.get("handed_back")
    # Unsigned replies are anyone's to write: a field of the wrong type must not crash the table.
    if not isinstance(duration, (int, float)):
        return ""
    return (
        f"finished {len(finished) if isinstance(finished, list) else '?'}, handed back "
        f"{len(handed_back) if isinstance(handed_back, list) else '?'}, in {duration:.2f}s"
    )


# From this many rows on, tables are plain text: rich measures and wraps every cell (about
# 1 ms of CPU per row), which made `drainctl drain` to 500 instances spend longer drawing its
# table than draining.
PLAIN_FROM_ROWS = 100


def _table(headers: list[str], rows: list[list[str]]) -> None:
    if len(rows) >= PLAIN_FROM_ROWS:
        sys.stdout.write(plain_table(headers, rows))
        sys.stdout.flush()
        return
    _console().print(_build_table(headers, rows))


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    """The table as rich draws it without a box (columns two spaces apart), unwrapped."""
    cleaned = [[_CONTROL.sub("?", cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *cleaned, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *cleaned]
    ]
    return "\n".join(lines) + "\n"


def _build_table(headers: list[str], rows: list[list[str]]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers, box=None, pad_edge=False)
    for row in rows:
        # Text, not markup: a registry entry's "[/]" would make rich raise, "[red]" restyle.
        table.add_row(*(Text(cell) for cell in row))
    return table


def _console() -> Any:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console.width = 160  # piped or logged: wide rows beat wrapped cells
    return console
