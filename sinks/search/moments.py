"""The write side of moments (core/migrations/0012_moments.sql): what happens when in a video or audio file.

- An asset-level transcript (``Transcript(scope="asset")``, ``keyframe_ms`` None) replaces the asset's segments of
  that model version in ``search_moments``, when it is newer than the stored one (``is_newer``: replays and
  out-of-order delivery converge, as for the documents).
  Its segments' MiniLM vectors (carried in the event, 0015) are written with them, in the same transaction.
- A keyframe annotation with an embedding (``keyframe_ms`` set) is upserted into ``search_frame_vectors`` (newest
  wins per keyframe), so similarity can answer "this video, at 00:42".

Both run inside the search sink's transaction (the one that stores its offsets), whichever engine holds the
documents: moments are PostgreSQL tables for both (an OpenSearch installation reads them from PostgreSQL too).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from psycopg import sql

from core.db import Conn
from models.text_embed import unpack_vector
from schemas.events import Annotation, Transcript
from sinks.search.interface import is_newer

_ensured: dict[tuple[str, str], int] = {}  # (model, version) -> dim whose HNSW index exists (per process)


def apply(tx: Conn, events: list[Annotation]) -> int:
    """Write the moments the batch carries; returns how many annotations changed something."""
    changed = 0
    for a in events:
        if isinstance(a.payload, Transcript) and a.payload.scope == "asset" and a.keyframe_ms is None:
            changed += _transcript(tx, a, a.payload)
        elif a.keyframe_ms is not None:
            embedding = a.payload.search_fields().embedding
            if embedding is not None:
                changed += _frame(tx, a, embedding)
    return changed


def _transcript(tx: Conn, a: Annotation, t: Transcript) -> int:
    row = tx.execute(
        """SELECT produced_at, annotation_id FROM search_moments WHERE asset_id=%s AND model=%s AND model_version=%s
           ORDER BY seq LIMIT 1 FOR UPDATE""", (a.asset_id, a.model, a.model_version)).fetchone()
    incoming: dict[str, Any] = {"produced_at": a.occurred_at, "annotation_id": a.annotation_id}
    if row is not None and not is_newer(dict(row), incoming):
        return 0
    tx.execute("DELETE FROM search_moments WHERE asset_id=%s AND model=%s AND model_version=%s",
               (a.asset_id, a.model, a.model_version))
    tx.cursor().executemany(
        """INSERT INTO search_moments (asset_id, model, model_version, seq, start_ms, end_ms, text, language,
                                       produced_at, annotation_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
        [(a.asset_id, a.model, a.model_version, i, s.start_ms, s.end_ms, s.text, s.language or t.language,
          a.occurred_at, a.annotation_id) for i, s in enumerate(t.segments)])
    vectors = [(i, unpack_vector(s.vector)) for i, s in enumerate(t.segments) if s.vector]
    if vectors and t.vector_model:  # the old ones went with their segments (ON DELETE CASCADE, 0015)
        ensure_moment_index(tx, t.vector_model, len(vectors[0][1]))
        tx.cursor().executemany(
            """INSERT INTO search_moment_vectors (asset_id, model, model_version, seq, embed_model, embedding)
               VALUES (%s,%s,%s,%s,%s,%s)""",
            [(a.asset_id, a.model, a.model_version, i, t.vector_model, v) for i, v in vectors])
    return 1


def ensure_moment_index(tx: Conn, embed_model: str, dim: int) -> None:
    """The text model version's partial HNSW index over segment vectors (0015); created once, when missing."""
    if _ensured.get(("moments", embed_model)) == dim:
        return
    name = f"smv_{hashlib.sha256(embed_model.encode()).hexdigest()[:12]}"
    if tx.execute("SELECT 1 FROM pg_class WHERE relname=%s", (name,)).fetchone() is None:
        tx.execute("SELECT pg_advisory_xact_lock(7245505)")
        tx.execute(sql.SQL(
            "CREATE INDEX IF NOT EXISTS {i} ON search_moment_vectors USING hnsw ((embedding::vector({d})) "
            "vector_cosine_ops) WHERE embed_model = {m}").format(
            i=sql.Identifier(name), d=sql.Literal(dim), m=sql.Literal(embed_model)))
    _ensured[("moments", embed_model)] = dim


def _index_name(model: str, version: str) -> str:
    return f"sfv_{model[:30]}_{hashlib.sha256(version.encode()).hexdigest()[:10]}"


def ensure_frame_index(tx: Conn, model: str, version: str, dim: int) -> None:
    """The (model, version)'s partial HNSW index on the cast the queries use; created once, when missing."""
    if _ensured.get((model, version)) == dim:
        return
    name = _index_name(model, version)
    if tx.execute("SELECT 1 FROM pg_class WHERE relname=%s", (name,)).fetchone() is None:
        tx.execute("SELECT pg_advisory_xact_lock(7245505)")
        tx.execute(sql.SQL(
            "CREATE INDEX IF NOT EXISTS {i} ON search_frame_vectors USING hnsw ((embedding::vector({d})) "
            "vector_cosine_ops) WHERE model = {m} AND model_version = {v}").format(
            i=sql.Identifier(name), d=sql.Literal(dim), m=sql.Literal(model), v=sql.Literal(version)))
    _ensured[(model, version)] = dim


def _frame(tx: Conn, a: Annotation, embedding: list[float]) -> int:
    ensure_frame_index(tx, a.model, a.model_version, len(embedding))
    cur = tx.execute(
        """INSERT INTO search_frame_vectors AS f (asset_id, model, model_version, t_ms, embedding, produced_at,
                                                 annotation_id) VALUES (%s,%s,%s,%s,%s,%s,%s)
           ON CONFLICT (asset_id, model, model_version, t_ms) DO UPDATE SET embedding=EXCLUDED.embedding,
               produced_at=EXCLUDED.produced_at, annotation_id=EXCLUDED.annotation_id
           WHERE (f.produced_at, f.annotation_id) < (EXCLUDED.produced_at, EXCLUDED.annotation_id)""",
        (a.asset_id, a.model, a.model_version, a.keyframe_ms, np.asarray(embedding, dtype=np.float32),
         a.occurred_at, a.annotation_id))
    return 1 if cur.rowcount else 0
