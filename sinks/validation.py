"""Checks a sink makes before applying a record that parsed fine but must still not be trusted.

Records on the topics are written by our own relay and processors, but a topic is an open door
(another client, a replayed backup, a bug): a record must match its topic, and it must refer to an
asset of the system of record. The relay publishes ``media.uploaded`` only after the asset row
committed, and annotations are made from those events, so an unknown asset is always a bad record.
Raising here makes the sink runtime isolate the record into ``dead_letters``; it never blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

from core import kafka
from core.db import Conn
from core.settings import Settings
from schemas.events import Annotation, SchemaError


class UnknownAsset(SchemaError):
    """The record names an asset that is not in the system of record."""


def check_annotation_topic(settings: Settings, topic: str | None, a: Annotation) -> None:
    if topic != settings.topic(kafka.annotations_topic(a.model)):
        raise SchemaError(f"annotation of model {a.model!r} on topic {topic!r}")


def check_known_assets(conn: Conn, asset_ids: Iterable[str]) -> None:
    ids = sorted(set(asset_ids))
    if not ids:
        return
    known = {r["asset_id"] for r in conn.execute("SELECT asset_id FROM assets WHERE asset_id = ANY(%s)",
                                                  (ids,)).fetchall()}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UnknownAsset(f"unknown asset(s) {', '.join(u[:16] for u in unknown[:3])}")
