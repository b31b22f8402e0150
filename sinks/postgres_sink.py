"""PostgreSQL sink: annotations and dead letters into the system of record.

An annotation is applied at most once (its deterministic id is the primary key) and marks the
asset's status for that model ``done``; a dead letter marks it ``failed`` with the reason, unless
the model already succeeded for that asset (a late duplicate failure never hides a result).
"""

from __future__ import annotations

from confluent_kafka import Message
from psycopg.types.json import Jsonb

from core import kafka
from core.db import Conn
from schemas.events import Annotation, DeadLetter, parse
from sinks import lifecycle
from sinks.runtime import SinkWriter
from sinks.validation import check_annotation_topic


class PostgresSink(SinkWriter):
    name = "postgres"

    def __init__(self, settings, models: list[str]) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self.models = models

    def topics(self) -> list[str]:
        return [self.settings.topic(kafka.annotations_topic(m)) for m in self.models] + [
            self.settings.topic(kafka.TOPIC_DLQ)
        ]

    def write(self, conn: Conn, msgs: list[Message]) -> int:
        dlq = self.settings.topic(kafka.TOPIC_DLQ)
        anns: list[Annotation] = []
        letters: list[DeadLetter] = []
        for m in msgs:
            if m.topic() == dlq:
                letters.append(parse(m.value(), DeadLetter))
            else:
                a = parse(m.value(), Annotation)
                check_annotation_topic(self.settings, m.topic(), a)  # model must match its topic
                anns.append(a)
        # a killed or deleted asset keeps no annotation and no status: a late or replayed annotation, or the
        # dead letter of a processor that found its original gone, is dropped (docs/metadata.md)
        dead = lifecycle.tombstoned(conn, [a.asset_id for a in anns] + [d.asset_id for d in letters if d.asset_id])
        # objects a processor wrote for it after the kill's purge (it crashed before publishing, or dead-lettered
        # on the retry because the original was gone): removed now, idempotently
        lifecycle.purge_late(conn, self.settings, dead, anns)
        applied = sum(self._dead_letter(conn, d) for d in letters if d.asset_id not in dead)
        return applied + self._annotations(conn, [a for a in anns if a.asset_id not in dead])

    @staticmethod
    def _annotations(conn: Conn, anns: list[Annotation]) -> int:
        """The whole batch in two statements instead of two per annotation (one round trip each): the rows, skipping
        ids already applied (a duplicate delivery), then the status of every (asset, model) that got a new row."""
        unique = list({a.annotation_id: a for a in anns}.values())  # a redelivery within the batch: once
        if not unique:
            return 0
        cols = [list(c) for c in zip(*[(a.annotation_id, a.asset_id, a.model, a.model_version, a.keyframe_ms,
                                         Jsonb(a.payload.model_dump(mode="json")), a.occurred_at) for a in unique],
                                     strict=True)]
        fresh = {r["annotation_id"] for r in conn.execute(
            """INSERT INTO annotations (annotation_id, asset_id, model, model_version, keyframe_ms, payload,
                                        produced_at)
               SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::integer[], %s::jsonb[],
                                    %s::timestamptz[])
               ON CONFLICT (annotation_id) DO NOTHING RETURNING annotation_id""", cols).fetchall()}
        done = {(a.asset_id, a.model): a.model_version for a in unique if a.annotation_id in fresh}  # last one wins
        if done:
            conn.execute(
                """INSERT INTO asset_model_status (asset_id, model, model_version, status)
                   SELECT *, 'done' FROM unnest(%s::text[], %s::text[], %s::text[])
                   ON CONFLICT (asset_id, model) DO UPDATE
                   SET status='done', model_version=EXCLUDED.model_version, reason=NULL, updated_at=now()""",
                ([k[0] for k in done], [k[1] for k in done], list(done.values())),
            )
        return len(fresh)

    @staticmethod
    def _dead_letter(conn: Conn, d: DeadLetter) -> int:
        cur = conn.execute(
            """INSERT INTO dead_letters (event_id, stage, reason, error_type, asset_id, model, source_topic,
                                         source_partition, source_offset, raw_value, created_at)
               VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (event_id) DO NOTHING""",
            (d.event_id, d.stage, d.reason, d.error_type, d.asset_id, d.model, d.source_topic,
             d.source_partition, d.source_offset, d.raw_value, d.occurred_at),
        )
        if cur.rowcount and d.asset_id and d.model:
            conn.execute(
                """INSERT INTO asset_model_status (asset_id, model, status, reason)
                   SELECT asset_id, %s, 'failed', %s FROM assets WHERE asset_id = %s
                   ON CONFLICT (asset_id, model) DO UPDATE SET status='failed', reason=EXCLUDED.reason,
                       updated_at=now()
                   WHERE asset_model_status.status <> 'done'""",
                (d.model, d.reason, d.asset_id),
            )
        return cur.rowcount
