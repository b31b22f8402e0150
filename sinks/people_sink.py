"""People sink: face descriptor annotations into faces and persons, exactly once.

Runs on the shared sink runtime (sinks/runtime.py): the face rows, their assignment and the consumed offsets
commit in ONE PostgreSQL transaction. A face's id is ``<annotation id>-<index>``, so a redelivered annotation
is a no-op (its faces exist), and a face whose data was deleted (forgotten person, removed asset) is never
re-added (``people_tombstones``). Each new clusterable face is assigned incrementally (sinks/people/assign.py);
every ``people.recluster_every`` new faces the loose ones are re-clustered in the same transaction.

Privacy: with ``people.enabled`` off, or recognition off for the asset's collection (``people_collections``),
faces are stored as detections only (no descriptor, no person). The descriptor comes from the event when an
installation puts it there, else from the object store (``faces/<ref>``); a missing object (forgotten) leaves
the face a detection.
"""

from __future__ import annotations

import logging
from functools import cached_property

import numpy as np
from confluent_kafka import Message
from psycopg.types.json import Jsonb

from core import kafka
from core.db import Conn
from core.settings import Settings
from core.storage import ObjectMissing, ObjectStore
from models.face_embed import descriptor_from_bytes, descriptor_key
from schemas.events import Annotation, FaceDescriptors, parse
from sinks import lifecycle
from sinks.people import assign
from sinks.runtime import SinkWriter
from sinks.validation import check_annotation_topic, check_known_assets

log = logging.getLogger(__name__)

FACE_MODELS = ("face_embed",)  # annotation models whose payloads are face descriptors


def recognition_allowed(conn: Conn, settings: Settings, asset_id: str) -> bool:
    """The global switch and the asset's collection's switch (a collection without a row: on)."""
    if not settings.people.enabled:
        return False
    row = conn.execute(
        """SELECT c.recognition FROM assets a JOIN people_collections c ON c.collection = a.collection
           WHERE a.asset_id = %s""", (asset_id,)).fetchone()
    return row is None or bool(row["recognition"])


class PeopleSink(SinkWriter):
    name = "people"

    def __init__(self, settings: Settings, models: list[str]) -> None:
        super().__init__(settings)
        self.models = [m for m in models if m in FACE_MODELS]

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(self.settings)

    def topics(self) -> list[str]:
        return [self.settings.topic(kafka.annotations_topic(m)) for m in self.models]

    def write(self, conn: Conn, msgs: list[Message]) -> int:
        anns = []
        for m in msgs:
            a = parse(m.value(), Annotation)
            check_annotation_topic(self.settings, m.topic(), a)
            anns.append(a)
        check_known_assets(conn, [a.asset_id for a in anns])
        dead = lifecycle.tombstoned(conn, [a.asset_id for a in anns])  # killed/deleted: never faces again
        anns = [a for a in anns if a.asset_id not in dead]
        if any(isinstance(a.payload, FaceDescriptors) and a.payload.faces for a in anns):
            assign.lock(conn)  # curation (retrieval/people/curation.py) waits for this batch, and vice versa
        applied = 0
        recluster = False
        for a in anns:
            if not isinstance(a.payload, FaceDescriptors):
                continue  # a video's summary: its keyframes carry the faces
            n, due = self._apply(conn, a, a.payload)
            applied += n
            recluster = recluster or due
        if recluster:
            stats = assign.recluster(conn, self.settings)
            log.info("people: re-clustered %s", stats)
        return applied

    def _descriptor(self, ref: str | None, inline: list[float] | None) -> np.ndarray | None:
        if inline is not None:
            return np.asarray(inline, dtype=np.float32)
        if ref is None:
            return None
        try:
            return descriptor_from_bytes(self.store.get(descriptor_key(ref)))
        except ObjectMissing:
            return None  # deleted (forgotten): the face stays a detection

    def _apply(self, conn: Conn, a: Annotation, p: FaceDescriptors) -> tuple[int, bool]:
        if not p.faces:
            return 0, False
        face_ids = [f"{a.annotation_id}-{j}" for j in range(len(p.faces))]
        known = {r["face_id"] for r in conn.execute(
            "SELECT face_id FROM people_faces WHERE face_id = ANY(%s) UNION "
            "SELECT face_id FROM people_tombstones WHERE face_id = ANY(%s)", (face_ids, face_ids)).fetchall()}
        allowed = recognition_allowed(conn, self.settings, a.asset_id)
        applied, due = 0, False
        for j, (face_id, f) in enumerate(zip(face_ids, p.faces, strict=True)):
            if face_id in known:
                continue  # redelivered, or deleted on purpose
            vec = self._descriptor(f.descriptor_ref, f.descriptor) if allowed and f.recognisable else None
            conn.execute(
                """INSERT INTO people_faces (face_id, annotation_id, asset_id, model_version, keyframe_ms, face_index,
                       box, score, size_px, sharpness, recognisable, descriptor_ref, descriptor, produced_at)
                   VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::vector,%s)""",
                (face_id, a.annotation_id, a.asset_id, a.model_version, a.keyframe_ms, j,
                 Jsonb(f.box.model_dump()), f.score, f.size_px, f.sharpness, f.recognisable,
                 f.descriptor_ref if vec is not None else None,
                 assign.vec_param(vec) if vec is not None else None, a.occurred_at))
            applied += 1
            if vec is not None:
                assign.assign_new(conn, self.settings, face_id, vec)
                due = assign.count_new_face(conn, self.settings) or due
        return applied, due
