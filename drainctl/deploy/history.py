"""Deploy history: one record per finished deploy (the hook's included) in a capped stream.

Each record is a JSON document (signed with kind ``history`` when a secret is set; readers skip
records that fail the check) in ``Keys.history``, trimmed to about ``HISTORY_MAX`` entries with
``XADD MAXLEN ~`` and expiring ``HISTORY_TTL`` after the last deploy.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from drainctl.deploy.lock import server_now
from drainctl.errors import Unauthenticated
from drainctl.keys import Keys
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

HISTORY_MAX = 200
HISTORY_TTL = 90 * 24 * 3600.0


def append(client: redis.Redis, app: str, record: dict[str, Any], signer: Signer | None) -> None:
    """Add one deploy's record; the stream stays capped and expires if the app stops deploying."""
    key = Keys(app).history
    body = dict(record, at=server_now(client))
    if signer is not None:
        body = signer.sign(body, "history", body["at"])
    pipe = client.pipeline(transaction=True)
    pipe.xadd(key, {"doc": json.dumps(body, default=str)}, maxlen=HISTORY_MAX, approximate=True)
    pipe.pexpire(key, round(HISTORY_TTL * 1000))
    pipe.execute()


def recent(
    client: redis.Redis, app: str, count: int, signer: Signer | None
) -> list[dict[str, Any]]:
    """The ``count`` latest records, newest first; unreadable or unsigned ones are skipped."""
    records = []
    for _, fields in client.xrevrange(Keys(app).history, count=count) or []:
        try:
            body = json.loads((fields or {})[b"doc"])
            if signer is not None:
                signer.authenticate(body, "history")
        except (KeyError, ValueError, TypeError, Unauthenticated) as exc:
            logger.warning("skipping a deploy history record: %s", exc)
            continue
        records.append({k: v for k, v in body.items() if k not in ("ts", "nonce", "sig")})
    return records
