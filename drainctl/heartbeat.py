"""Heartbeat documents: what one may hold, how a listener seals it and a reader checks it.

Anyone who can write to the app's Redis can write a heartbeat document, so a reader trusts
nothing in it by default:

- **Shape.** A document that is not a JSON object, or lacks a string ``instance_id`` matching
  its key or a string ``process_type``, is skipped. A known field of the wrong type (an interval
  of ``"x"``, ``null`` or ``1e308``, a dyno that is a list...) is dropped or reset to its default,
  and control characters in its strings become ``?`` (they end up on terminals). Either way the
  reader logs a warning (once per instance and problem), never raises.
- **Signature.** With a secret set, a listener signs its document (kind ``heartbeat``; the
  signed ``ts`` is its beat time) and a reader marks a document that fails the check as
  unverified: shown by ``status``, never counted in a plan or a verify, never waited for.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from drainctl.__about__ import __version__
from drainctl.errors import Unauthenticated
from drainctl.protocol import dump_json
from drainctl.signing import Signer, finite

logger = logging.getLogger(__name__)

KIND = "heartbeat"
DEFAULT_INTERVAL = 5.0
# Longer intervals are not something a listener announces; a reader would overflow on 1e308.
MAX_INTERVAL = 24 * 3600.0
# Known fields and the JSON types they may have (None is always allowed); others pass as is.
_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "dyno": (str,),
    "release": (str,),
    "commit": (str,),
    "state": (str,),
    "host": (str,),
    "drainctl_version": (str,),
    "pid": (int,),
    "in_flight": (int,),
    "jobs_done": (int,),
    "errors": (int,),
    "memory_mb": _NUMBER,
    "started_at": _NUMBER,
    "beat_at": _NUMBER,
    "deploy_fenced": (bool,),
    "last_error": (dict, str),
    # A one-off's (drainctl run): what it runs and for how long.
    "command": (str,),
    "run_s": _NUMBER,
}
_MAX_WARNED = 1024
_MAX_VERDICTS = 4096
_NOT_JSON = object()
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Checked:
    """A document that passed the shape check; ``verified`` is None when no secret is set."""

    doc: dict[str, Any]
    verified: bool | None
    doubt: str = ""


def seal(doc: dict[str, Any], signer: Signer | None) -> bytes:
    """The document as stored: with the drainctl version, signed when there is a secret."""
    doc = doc | {"drainctl_version": __version__}
    if signer is None:
        return dump_json(doc)
    # Sign what readers will parse (tuples become lists, other objects strings).
    body = orjson.loads(dump_json(doc))
    beat_at = finite(body.get("beat_at"))
    return dump_json(signer.sign(body, KIND, beat_at if beat_at is not None else 0.0))


class Checker:
    """Checks the documents a reader gets; remembers what it warned about so it warns once."""

    def __init__(self, signer: Signer | None = None) -> None:
        self.signer = signer
        self._warned: set[tuple[str, str]] = set()
        # Results by instance id and stored bytes: a requester reading the registry often (a
        # ping per command, verify every 0.25 s) parses, cleans and checks the HMAC of each
        # beat once, not at every read. Readers must not modify the documents they get.
        self._checked: dict[tuple[str, bytes | str], Checked | None] = {}

    def check(self, instance_id: str, raw: bytes | str) -> Checked | None:
        """The checked document stored under ``instance_id``, or None to skip it."""
        key = (instance_id, raw)
        try:
            return self._checked[key]
        except KeyError:
            pass
        if len(self._checked) >= _MAX_VERDICTS:
            self._checked.clear()
        checked = self._checked[key] = self._check(instance_id, raw)
        return checked

    def _check(self, instance_id: str, raw: bytes | str) -> Checked | None:
        doc = _load(raw)
        problem = _shape_problem(instance_id, doc)
        if problem is not None or not isinstance(doc, dict):
            self._warn(instance_id, f"{problem}: skipped")
            return None
        verified, doubt = self._authenticity(doc)
        return Checked(self._clean(instance_id, doc), verified, doubt)

    def _authenticity(self, doc: dict[str, Any]) -> tuple[bool | None, str]:
        if self.signer is None:
            return None, ""
        try:
            self.signer.authenticate(doc, KIND)
        except Unauthenticated as exc:
            return False, str(exc)
        return True, ""

    def _clean(self, instance_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        wrong = [
            name
            for name, types in _FIELD_TYPES.items()
            if doc.get(name) is not None and not _is(doc[name], types)
        ]
        if wrong:
            self._warn(instance_id, f"has fields of the wrong type, ignored: {', '.join(wrong)}")
            doc = {k: v for k, v in doc.items() if k not in wrong}
        interval = doc.get("heartbeat_interval", DEFAULT_INTERVAL)
        if interval_of(doc) != interval:
            self._warn(
                instance_id,
                f"has heartbeat_interval {repr(interval)[:64]}; assuming {DEFAULT_INTERVAL:g} s",
            )
            doc = doc | {"heartbeat_interval": DEFAULT_INTERVAL}
        return self._printable(instance_id, doc)

    def _printable(self, instance_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        # Shown on terminals and in logs: an escape sequence must not reach either.
        dirty = [n for n in _FIELD_TYPES if isinstance(doc.get(n), str) and _CONTROL.search(doc[n])]
        if not dirty:
            return doc
        self._warn(instance_id, f"has control characters, replaced by '?': {', '.join(dirty)}")
        return doc | {name: _CONTROL.sub("?", doc[name]) for name in dirty}

    def _warn(self, instance_id: str, problem: str) -> None:
        if (instance_id, problem) in self._warned:
            return
        if len(self._warned) >= _MAX_WARNED:
            self._warned.clear()
        self._warned.add((instance_id, problem))
        logger.warning("registry entry %r %s", instance_id[:64], problem)


def _load(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except ValueError:
        return _NOT_JSON


def _shape_problem(instance_id: str, doc: Any) -> str | None:
    if doc is _NOT_JSON:
        return "is not JSON"
    if not isinstance(doc, dict):
        return "is not a JSON object"
    if doc.get("instance_id") != instance_id:
        return "names another instance id than its key"
    if _CONTROL.search(instance_id):
        return "has control characters in its id"
    process_type = doc.get("process_type")
    if not isinstance(process_type, str) or _CONTROL.search(process_type):
        return "has no printable process_type string"
    return None


def interval_of(doc: dict[str, Any]) -> float:
    """The document's heartbeat interval, or the default when it is not a sensible number."""
    interval = finite(doc.get("heartbeat_interval"))
    if interval is None or not 0 < interval <= MAX_INTERVAL:
        return DEFAULT_INTERVAL
    return interval


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int to Python, not to a reader: True is neither a pid nor a count.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) and not (isinstance(value, float) and not math.isfinite(value))
