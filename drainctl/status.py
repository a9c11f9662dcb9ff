"""What ``drainctl status`` shows: the live instances in a stable order and the deploy running."""

from __future__ import annotations

from dataclasses import dataclass

from drainctl.channel import ControlClient
from drainctl.connection import translate_outage
from drainctl.deploy.lock import read_holder, server_now
from drainctl.registry import InstanceRecord
from drainctl.signing import Signer


@dataclass(frozen=True)
class Snapshot:
    """One reading: instances sorted by type, dyno and id (rows keep their place in --watch),
    and the deploy in progress, described, or None."""

    records: list[InstanceRecord]
    deploy: str | None
    at: float


class StatusReader:
    """Reads snapshots of one app, every call a fresh one."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client
        self.signer = Signer.from_settings(client.settings)

    def read(self) -> Snapshot:
        """The live instances (unverified ones too, marked) and the deploy lock's holder."""
        records = self.client.live(unverified=True)
        with translate_outage(self.client.settings):
            holder = read_holder(self.client.client, self.client.app, self.signer)
            now = server_now(self.client.client)
        records.sort(key=lambda r: (r.process_type, str(r.doc.get("dyno") or ""), r.instance_id))
        return Snapshot(records, holder.describe(now) if holder is not None else None, now)
