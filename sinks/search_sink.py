"""Search-index sink: upload events create the document, annotations merge into it (newest wins)."""

from __future__ import annotations

from confluent_kafka import Message

from core import kafka
from core.db import Conn
from core.settings import Settings
from schemas.events import Annotation, MediaLifecycle, MediaUploaded, parse
from sinks import lifecycle
from sinks.runtime import SinkWriter
from sinks.search import get_search_writer, moments
from sinks.validation import check_annotation_topic, check_known_assets


class SearchSink(SinkWriter):
    name = "search"

    def __init__(self, settings: Settings, models: list[str]) -> None:
        super().__init__(settings)
        self.models = models
        self.index = get_search_writer(settings)

    def start(self) -> None:
        # the engine's own schema (OpenSearch: index template + first index); PostgreSQL tables are migrations
        self.index.ensure_schema()

    def topics(self) -> list[str]:
        return [self.settings.topic(kafka.TOPIC_UPLOADED), self.settings.topic(kafka.TOPIC_LIFECYCLE)] + [
            self.settings.topic(kafka.annotations_topic(m)) for m in self.models
        ]

    def write(self, conn: Conn, msgs: list[Message]) -> int:
        uploaded_topic = self.settings.topic(kafka.TOPIC_UPLOADED)
        lifecycle_topic = self.settings.topic(kafka.TOPIC_LIFECYCLE)
        uploads = [parse(m.value(), MediaUploaded) for m in msgs if m.topic() == uploaded_topic]
        events = [parse(m.value(), MediaLifecycle) for m in msgs if m.topic() == lifecycle_topic]
        ann_msgs = [m for m in msgs if m.topic() not in (uploaded_topic, lifecycle_topic)]
        annotations = [parse(m.value(), Annotation) for m in ann_msgs]
        for m, a in zip(ann_msgs, annotations, strict=True):
            check_annotation_topic(self.settings, m.topic(), a)
        # a record about an asset the system of record does not know is dead-lettered, never indexed
        check_known_assets(conn, [e.asset_id for e in uploads + events] + [a.asset_id for a in annotations])
        # a killed or deleted asset is never indexed again, whatever arrives late or is replayed (docs/metadata.md)
        dead = lifecycle.tombstoned(conn, [e.asset_id for e in uploads] + [a.asset_id for a in annotations])
        lifecycle.purge_late(conn, self.settings, dead, annotations)  # objects a mid-way processor wrote after it
        uploads = [e for e in uploads if e.asset_id not in dead]
        annotations = lifecycle.overlay_edits(conn, [a for a in annotations if a.asset_id not in dead])
        # uploads first so that a batch holding both creates the doc with its metadata
        applied = self.index.upsert_assets(conn, uploads) + self.index.apply_annotations(conn, annotations)
        moments.apply(conn, annotations)  # transcript segments and keyframe vectors (PostgreSQL, any engine)
        gone = sorted({e.asset_id for e in events if lifecycle.apply_event(conn, self.settings, e)})
        if gone:
            self.index.remove_assets(conn, gone)  # the engine's documents and vectors (PostgreSQL: already gone)
        return applied + len(events)
