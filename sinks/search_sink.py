"""Search-index sink: upload events create the document, annotations merge into it (newest wins)."""

from __future__ import annotations

from confluent_kafka import Message

from core import kafka
from core.db import Conn
from core.settings import Settings
from schemas.events import Annotation, MediaUploaded, parse
from sinks.runtime import SinkWriter
from sinks.search import get_search_writer
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
        return [self.settings.topic(kafka.TOPIC_UPLOADED)] + [
            self.settings.topic(kafka.annotations_topic(m)) for m in self.models
        ]

    def write(self, conn: Conn, msgs: list[Message]) -> int:
        uploaded_topic = self.settings.topic(kafka.TOPIC_UPLOADED)
        uploads = [parse(m.value(), MediaUploaded) for m in msgs if m.topic() == uploaded_topic]
        annotations = [parse(m.value(), Annotation) for m in msgs if m.topic() != uploaded_topic]
        for m, a in zip([m for m in msgs if m.topic() != uploaded_topic], annotations, strict=True):
            check_annotation_topic(self.settings, m.topic(), a)
        # a record about an asset the system of record does not know is dead-lettered, never indexed
        check_known_assets(conn, [e.asset_id for e in uploads] + [a.asset_id for a in annotations])
        # uploads first so that a batch holding both creates the doc with its metadata
        return self.index.upsert_assets(conn, uploads) + self.index.apply_annotations(conn, annotations)
