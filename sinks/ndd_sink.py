"""NDD sink: PDQ hash annotations into the near-duplicate index tables, exactly once.

Runs on the shared sink runtime (sinks/runtime.py): the rows and the consumed offsets commit in
one PostgreSQL transaction. One ``ndd_hashes`` row per (asset, algorithm): a redelivered
annotation (same annotation id) is a no-op, a newer one (later produced_at, e.g. a new hasher
version) replaces the row and its frames and takes a new ``seq`` so that the API's in-memory
index picks the change up. The picture's content-region hashes and ORB keypoints (the region and
keypoints paths, docs/ndd.md) travel in the same payload and land in the same row.
"""

from __future__ import annotations

import base64

from confluent_kafka import Message
from psycopg.types.json import Jsonb

from core import kafka
from core.db import Conn
from core.settings import Settings
from models.pdq.hashing import hex_to_bytes
from schemas.events import Annotation, PerceptualHash, parse
from sinks import lifecycle
from sinks.runtime import SinkWriter

HASH_MODELS = ("pdq",)  # annotation models whose payloads are perceptual hashes


class NddSink(SinkWriter):
    name = "ndd"

    def __init__(self, settings: Settings, models: list[str]) -> None:
        super().__init__(settings)
        self.models = [m for m in models if m in HASH_MODELS]

    def topics(self) -> list[str]:
        return [self.settings.topic(kafka.annotations_topic(m)) for m in self.models]

    def write(self, conn: Conn, msgs: list[Message]) -> int:
        applied = 0
        anns = [parse(m.value(), Annotation) for m in msgs]
        dead = lifecycle.tombstoned(conn, [a.asset_id for a in anns])  # killed/deleted: never indexed again
        for ann in anns:
            if not isinstance(ann.payload, PerceptualHash):
                raise ValueError(f"{ann.model} annotation {ann.annotation_id} is not a perceptual hash")
            if ann.asset_id not in dead:
                applied += self._apply(conn, ann, ann.payload)
        return applied

    @staticmethod
    def _apply(conn: Conn, a: Annotation, p: PerceptualHash) -> int:
        row = conn.execute(
            """INSERT INTO ndd_hashes (asset_id, algorithm, model_version, annotation_id, media_type, hash, quality,
                                       interval_ms, duration_ms, n_frames, produced_at, regions, features)
               VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
               ON CONFLICT (asset_id, algorithm) DO UPDATE SET
                   model_version=EXCLUDED.model_version, annotation_id=EXCLUDED.annotation_id,
                   media_type=EXCLUDED.media_type, hash=EXCLUDED.hash, quality=EXCLUDED.quality,
                   interval_ms=EXCLUDED.interval_ms, duration_ms=EXCLUDED.duration_ms, n_frames=EXCLUDED.n_frames,
                   produced_at=EXCLUDED.produced_at, regions=EXCLUDED.regions, features=EXCLUDED.features,
                   applied_at=now(), seq=nextval('ndd_seq')
               -- newest wins; the same annotation delivered again changes nothing
               WHERE ndd_hashes.annotation_id <> EXCLUDED.annotation_id
                 AND (ndd_hashes.produced_at, ndd_hashes.annotation_id) < (EXCLUDED.produced_at, EXCLUDED.annotation_id)
               RETURNING id""",
            (a.asset_id, p.algorithm, a.model_version, a.annotation_id, p.media_type,
             hex_to_bytes(p.hash) if p.hash else None, p.quality, p.interval_ms, p.duration_ms, len(p.frames),
             a.occurred_at, Jsonb([r.model_dump() for r in p.regions]),
             base64.b64decode(p.features) if p.features else None),
        ).fetchone()
        if row is None:
            return 0
        conn.execute("DELETE FROM ndd_frames WHERE hash_id=%s", (row["id"],))
        if p.frames:
            conn.cursor().executemany(
                """INSERT INTO ndd_frames (hash_id, t_ms, hash, quality, regions) VALUES (%s,%s,%s,%s,%s)
                   ON CONFLICT DO NOTHING""",
                [(row["id"], f.t_ms, hex_to_bytes(f.hash), f.quality, Jsonb([r.model_dump() for r in f.regions]))
                 for f in p.frames],
            )
        return 1
