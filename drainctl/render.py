"""Terminal and JSON output for the CLI (rich is imported only when a table is drawn)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from drainctl.channel import Outcome
from drainctl.registry import InstanceRecord

if TYPE_CHECKING:
    from drainctl.doctor import Report


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


def status_table(records: Iterable[InstanceRecord]) -> None:
    """The live instances as a table; with a secret, whether each heartbeat is signed with it."""
    records = list(records)
    checked = any(r.verified is not None for r in records)
    details = any("lease" in r.doc or "command" in r.doc for r in records)
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
            *([detail_cell(r.doc)] if details else []),
            *([_signature(r)] if checked else []),
        ]
        for r in records
    ]
    headers = ["type", "dyno", "instance", "release", "state", "in flight", "memory", "last beat"]
    headers += ["detail"] if details else []
    _table(headers + (["signature"] if checked else []), rows)


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


def _table(headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers, box=None, pad_edge=False)
    for row in rows:
        # Text, not markup: a registry entry's "[/]" would make rich raise, "[red]" restyle.
        table.add_row(*(Text(cell) for cell in row))
    console = Console()
    if not console.is_terminal:
        console.width = 160  # piped or logged: wide rows beat wrapped cells
    console.print(table)
