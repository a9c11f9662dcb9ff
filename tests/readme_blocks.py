"""The README's fenced Python and shell blocks, with the marker comment each one carries.

A block is run unless the line before its fence is ``<!-- not run: REASON -->``; a block marked
``<!-- run in background: ... -->`` is started and left running while the blocks after it run,
then stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
RUNNABLE = {"python", "sh"}
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!-- (not run|run in background): (.+) -->$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its language, its code and how it is to be run."""

    line: int
    language: str
    code: str
    mode: str  # "run", "not run" or "run in background"
    reason: str = ""


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` in order; a marker line with a typo raises ValueError."""
    lines = text.splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            _check_marker(lines[index], index)
            index += 1
            continue
        end = lines.index("```", index + 1)
        marker = _MARKER.match(lines[index - 1]) if index else None
        found.append(
            Block(
                line=index + 1,
                language=opening.group(1),
                code="\n".join(lines[index + 1 : end]) + "\n",
                mode=marker.group(1) if marker else "run",
                reason=marker.group(2) if marker else "",
            )
        )
        index = end + 1
    return found


def _check_marker(line: str, index: int) -> None:
    if line.startswith("<!--") and ("run" in line) and not _MARKER.match(line):
        raise ValueError(f"README line {index + 1}: unrecognised run marker {line!r}")


def runnable(text: str) -> list[Block]:
    """The Python and shell blocks, in README order."""
    return [block for block in blocks(text) if block.language in RUNNABLE]


def minimal_acl() -> list[str]:
    """The ``ACL SETUSER`` lines the README documents (its listener and CLI users)."""
    lines = re.findall(r"^ACL SETUSER drainctl-\S+ .*$", README.read_text(), re.MULTILINE)
    assert len(lines) == 2, "README must document the listener and the CLI user"
    return lines
