"""The lifecycle sink: applies producers' lifecycle requests (``media.lifecycle.requests``) exactly once.

A producer cannot change an asset's lifecycle itself (the floors: producers sit below sinks, where
sinks/lifecycle.py lives), so the agency producer (producers/agency.py) writes a ``LifecycleRequest`` into the
outbox when a ``canceled`` (kill) or ``withheld`` (hold) notice arrives for an item it already ingested, or when a
withheld item is usable again (release). This sink applies each request through ``lifecycle.apply_in``, the
API's kill machinery, inside the sink runtime's transaction that also stores the consumed offsets
(sinks/runtime.py): the tombstone, the purge of every PostgreSQL index, the audit row, the ``media.lifecycle``
outbox row and the ``lifecycle_requests`` row (the request id: a redelivered or replayed request finds it and
changes nothing) commit together with the offsets, or not at all. The objects (renditions, sidecar, the original
to quarantine) and OpenSearch documents go when the search sink reads that ``media.lifecycle`` event
(``lifecycle.apply_event``, idempotent), as after an API kill.

- kill: an asset already killed or deleted stays as it is (outcome ``already killed``), so a second notice for
  the same item never writes a second tombstone;
- withhold: hidden like an embargo without end (``WITHHELD_UNTIL``); nothing on a killed asset;
- release: lifts a withhold only (an embargo the desk or the agency set, and a kill, stay: an admin restores).
A request that cannot be applied (unknown asset, a deleted one) is recorded with its outcome, never retried
forever and never dead-lettered twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from confluent_kafka import Message

from core import kafka
from core.db import Conn
from core.settings import Settings
from schemas.events import WITHHELD_UNTIL, LifecycleRequest, parse
from sinks import lifecycle
from sinks.runtime import SinkWriter

log = logging.getLogger(__name__)


def withheld(until: datetime | None) -> bool:
    return until is not None and until >= WITHHELD_UNTIL


class LifecycleRequestSink(SinkWriter):
    name = "lifecycle"

    def __init__(self, settings: Settings, models: list[str] | None = None) -> None:
        super().__init__(settings)

    def topics(self) -> list[str]:
        return [self.settings.topic(kafka.TOPIC_LIFECYCLE_REQUESTS)]

    def write(self, conn: Conn, msgs: list[Message]) -> int:
        applied = 0
        for m in msgs:
            req = parse(m.value(), LifecycleRequest)
            applied += self.apply(conn, req)
        if applied:
            conn.execute("NOTIFY argus_outbox")  # transactional: the relay wakes when this commits
        return applied

    def apply(self, tx: Conn, req: LifecycleRequest) -> int:
        """One request inside the open transaction; 1 when it changed the asset's lifecycle."""
        new = tx.execute("""INSERT INTO lifecycle_requests (request_id, asset_id, action, actor, reason, outcome)
                            VALUES (%s,%s,%s,%s,%s,'pending') ON CONFLICT (request_id) DO NOTHING
                            RETURNING request_id""",
                         (req.event_id, req.asset_id, req.action, req.actor, req.reason)).fetchone()
        if new is None:
            return 0  # applied before (a redelivery, a replay, the relay publishing twice)
        outcome, seq = self._effect(tx, req)
        tx.execute("UPDATE lifecycle_requests SET outcome=%s, seq=%s WHERE request_id=%s",
                   (outcome[:2000], seq, req.event_id))
        log.info("lifecycle request %s: %s %s -> %s", req.event_id, req.action, req.asset_id, outcome)
        return 1 if seq is not None else 0

    def _effect(self, tx: Conn, req: LifecycleRequest) -> tuple[str, int | None]:
        if tx.execute("SELECT 1 FROM assets WHERE asset_id=%s FOR UPDATE", (req.asset_id,)).fetchone() is None:
            return "unknown asset", None
        cur = lifecycle.state_of(tx, req.asset_id)
        kw: dict[str, Any] = {"actor": req.actor, "reason": req.reason}
        try:
            if req.action == "kill":
                if cur.state != "active":
                    return f"already {cur.state}", None
                done = lifecycle.apply_in(tx, self.settings, req.asset_id, "kill", **kw)
            elif req.action == "withhold":
                if cur.state != "active" or withheld(cur.embargo_until):
                    return f"nothing to do ({cur.state}{', withheld' if withheld(cur.embargo_until) else ''})", None
                done = lifecycle.apply_in(tx, self.settings, req.asset_id, "embargo", embargo_until=WITHHELD_UNTIL,
                                          **kw)
            else:  # release: only what a withhold held
                if cur.state != "active" or not withheld(cur.embargo_until):
                    return "nothing to do (not withheld)", None
                done = lifecycle.apply_in(tx, self.settings, req.asset_id, "embargo", embargo_until=None, **kw)
        except lifecycle.LifecycleError as exc:
            return f"refused: {exc}", None
        return "applied", done.state.seq
