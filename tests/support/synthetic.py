"""A large synthetic archive for page-load timing: asset rows plus search documents written through the search
index's own writer (the search sink's code path), without media or models. Labels ``label0000``..``label0199``
and sources/collections vary so that facets have real work to do."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

from core import db
from core.settings import Settings
from retrieval.search import get_search_index
from schemas.events import Annotation, Box, DetectedObject, MediaUploaded, ObjectDetection


def synthetic_archive(settings: Settings, n: int, batch: int = 1000, seed: int = 7) -> str:
    """Write ``n`` assets; returns one asset id."""
    rnd = random.Random(seed)
    index = get_search_index(settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first = ""
    for lo in range(0, n, batch):
        uploads, anns = [], []
        for i in range(lo, min(n, lo + batch)):
            aid = hashlib.sha256(f"synthetic-{i}".encode()).hexdigest()
            first = first or aid
            ev = MediaUploaded(event_id=f"up-{aid}", occurred_at=start + timedelta(minutes=i), asset_id=aid,
                               bucket="none", object_key=f"synthetic/{aid}", media_type="image",
                               content_type="image/jpeg", size_bytes=1000 + i, filename=f"wire-{i:05d}.jpg",
                               title=f"Synthetic wire photo {i}", source=rnd.choice(["AP", "Reuters", "AFP", "staff"]),
                               collection=rnd.choice(["sport", "politics", "weather", "culture"]))
            uploads.append(ev)
            objs = [DetectedObject(label=f"label{rnd.randrange(200):04d}", class_id=k, score=0.9,
                                   box=Box(x1=0.1, y1=0.1, x2=0.5, y2=0.5)) for k in range(3)]
            anns.append(Annotation(event_id=f"ann-{aid}", annotation_id=f"syn-{aid}", asset_id=aid,
                                   model="coco_centernet", model_version="synthetic", keyframe_ms=None,
                                   payload=ObjectDetection(object_count=len(objs), objects=objs)))
        with db.transaction(settings) as tx:
            tx.cursor().executemany(
                """INSERT INTO assets (asset_id, bucket, object_key, media_type, content_type, size_bytes, filename,
                                       title, source, collection, uploaded_at)
                   VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING""",
                [(e.asset_id, e.bucket, e.object_key, e.media_type, e.content_type, e.size_bytes, e.filename,
                  e.title, e.source, e.collection, e.occurred_at) for e in uploads])
            index.upsert_assets(tx, uploads)
            index.apply_annotations(tx, anns)
    return first
