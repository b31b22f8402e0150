"""PostgreSQL as the search engine: tsvector full text, GIN facets, pgvector HNSW kNN.

One row per asset in ``search_docs``: metadata, every annotation's search fields by model, version
and keyframe (``versions``, see merge.py) and what queries use, derived from it (``labels``,
``text_extra``, ``numeric`` as jsonb so a new model's numbers need no schema change, ``models``).
One table per embedding model ``search_vectors_<model>`` keyed by (asset, model version), with one
partial HNSW index per version: a new version is backfilled beside the old one and switched with
one row in ``search_model_versions`` (catalog.py). ``search_docs`` and ``search_vector_meta`` are
created by core/migrations/0006_search_docs.sql; the vector tables when a model version first appears.

This is the WRITE side (the search sink, version activation); the queries are
``retrieval.search.postgres_backend.PostgresSearchIndex``, which extends this class.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
from psycopg import sql
from psycopg.types.json import Jsonb

from core import db
from core.db import Conn
from core.settings import Settings
from schemas.events import Annotation, MediaUploaded
from sinks.search import catalog, merge
from sinks.search.interface import Activation, SearchIndexWriter

_MODEL_RE = re.compile(r"^[a-z0-9_]{1,40}$")


def vector_table(model: str) -> sql.Identifier:
    if not _MODEL_RE.match(model):
        raise ValueError(f"invalid model name {model!r}")
    return sql.Identifier(f"search_vectors_{model}")


def _index_name(model: str, version: str) -> str:
    return f"svh_{model}_{hashlib.sha256(version.encode()).hexdigest()[:10]}"


def vector_cast(dim: int) -> sql.Composable:
    """Vectors are stored untyped (versions may differ in size); each version's HNSW index and its
    queries use the same cast expression, which is how pgvector indexes mixed dimensions."""
    return sql.SQL("(v.embedding::vector({}))").format(sql.Literal(dim))


class PostgresSearchWriter(SearchIndexWriter):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ensured: dict[tuple[str, str], int] = {}  # (model, version) -> dim, vector storage ensured

    # ------------------------------------------------------------------------------ schema
    def ensure_schema(self) -> None:
        """Nothing to do: search_docs, search_vector_meta and the catalog tables are SQL migrations
        (core/migrations/0005, 0006), applied by ``argus migrate``. The per-model vector tables are
        created when a model version is first written (_ensure_vectors)."""

    def _ensure_vectors(self, tx: Conn, model: str, version: str, dim: int) -> None:
        """Vector table + this version's partial HNSW index; checked once per process, created only
        when missing (CREATE INDEX takes a lock that would serialise concurrent sinks)."""
        known = self._ensured.get((model, version))
        if known is not None:
            if known != dim:
                raise ValueError(f"{model} {version}: embedding has {dim} dims, stored vectors have {known}")
            return
        t = vector_table(model)
        row = tx.execute("SELECT dim FROM search_vector_meta WHERE model=%s AND model_version=%s",
                         (model, version)).fetchone()
        if row is None:
            tx.execute("SELECT pg_advisory_xact_lock(7245504)")
            tx.execute(sql.SQL(
                """CREATE TABLE IF NOT EXISTS {t} (
                       asset_id text NOT NULL, model_version text NOT NULL, embedding vector NOT NULL,
                       PRIMARY KEY (asset_id, model_version))""").format(t=t))
            for col in ("produced_at timestamptz", "annotation_id text", "keyframe_ms integer"):
                tx.execute(sql.SQL("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS " + col).format(t=t))
            tx.execute(sql.SQL(
                "CREATE INDEX IF NOT EXISTS {i} ON {t} USING hnsw ((embedding::vector({d})) vector_cosine_ops) "
                "WHERE model_version = {v}").format(
                i=sql.Identifier(_index_name(model, version)), t=t, d=sql.Literal(dim), v=sql.Literal(version)))
            tx.execute("INSERT INTO search_vector_meta (model, model_version, dim) VALUES (%s,%s,%s) "
                       "ON CONFLICT DO NOTHING", (model, version, dim))
            row = {"dim": dim}
        if row["dim"] != dim:
            raise ValueError(f"{model} {version}: embedding has {dim} dims, stored vectors have {row['dim']}")
        self._ensured[(model, version)] = dim

    # ------------------------------------------------------------------------------ writes
    def upsert_assets(self, tx: Conn, events: list[MediaUploaded]) -> int:
        tx.cursor().executemany(
            """INSERT INTO search_docs (asset_id, media_type, content_type, filename, title, description,
                                        source, collection, uploaded_at)
               VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)
               ON CONFLICT (asset_id) DO UPDATE SET
                 media_type=EXCLUDED.media_type, content_type=EXCLUDED.content_type,
                 filename=EXCLUDED.filename, title=EXCLUDED.title, description=EXCLUDED.description,
                 source=EXCLUDED.source, collection=EXCLUDED.collection, uploaded_at=EXCLUDED.uploaded_at,
                 updated_at=now()""",
            [(e.asset_id, e.media_type, e.content_type, e.filename, e.title, e.description, e.source,
              e.collection, e.occurred_at) for e in events],
        )
        return len(events)

    def apply_annotations(self, tx: Conn, events: list[Annotation]) -> int:
        if not events:
            return 0
        active = catalog.active_versions(tx, lock=True)  # a version switch waits for this batch
        fields = [a.payload.search_fields() for a in events]
        for a, f in zip(events, fields, strict=True):
            if a.model not in active:
                catalog.claim_first_version(tx, a.model, a.model_version)
                active[a.model] = a.model_version
            if f.embedding is not None:
                self._write_vector(tx, a, f.embedding)
        ids = sorted({a.asset_id for a in events})  # lock in a fixed order: no deadlocks between sinks
        tx.cursor().executemany("INSERT INTO search_docs (asset_id) VALUES (%s) ON CONFLICT DO NOTHING",
                                [(i,) for i in ids])  # an annotation may overtake its upload event
        docs = {r["asset_id"]: r["versions"] for r in tx.execute(
            "SELECT asset_id, versions FROM search_docs WHERE asset_id = ANY(%s) ORDER BY asset_id FOR UPDATE",
            (ids,))}
        changed: set[str] = set()
        applied = 0
        for a, f in zip(events, fields, strict=True):
            if merge.add(docs[a.asset_id], a, f):
                changed.add(a.asset_id)
                applied += 1
        self._write_summaries(tx, {i: docs[i] for i in sorted(changed)}, active)
        return applied

    def _write_vector(self, tx: Conn, a: Annotation, embedding: list[float]) -> None:
        self._ensure_vectors(tx, a.model, a.model_version, len(embedding))
        t = vector_table(a.model)
        tx.execute(sql.SQL(
            """INSERT INTO {t} AS t (asset_id, model_version, embedding, produced_at, annotation_id, keyframe_ms)
               VALUES (%s,%s,%s,%s,%s,%s)
               ON CONFLICT (asset_id, model_version) DO UPDATE SET embedding=EXCLUDED.embedding,
                   produced_at=EXCLUDED.produced_at, annotation_id=EXCLUDED.annotation_id,
                   keyframe_ms=EXCLUDED.keyframe_ms
               WHERE (coalesce(t.produced_at, '-infinity'), coalesce(t.annotation_id, ''))
                     < (EXCLUDED.produced_at, EXCLUDED.annotation_id)""").format(t=t),
            (a.asset_id, a.model_version, np.asarray(embedding, dtype=np.float32), a.occurred_at,
             a.annotation_id, a.keyframe_ms))

    @staticmethod
    def _write_summaries(tx: Conn, docs: dict[str, merge.Versions], active: dict[str, str]) -> None:
        rows = []
        for asset_id, versions in docs.items():
            s = merge.summarize(versions, active)
            rows.append((Jsonb(versions), Jsonb(s.models), s.labels, " ".join(s.labels), s.text or None,
                         s.title_text or None, Jsonb(s.numeric), s.model_keys, asset_id))
        tx.cursor().executemany(
            """UPDATE search_docs SET versions=%s, models=%s, labels=%s, labels_text=%s, text_extra=%s,
                      meta_text=%s, numeric=%s, model_keys=%s, updated_at=now() WHERE asset_id=%s""", rows)

    # ------------------------------------------------------------------------------ versions
    def activate_version(self, model: str, version: str, batch: int = 500) -> Activation:
        with db.transaction(self.settings) as conn:
            if db.scalar(conn, "SELECT count(*) FROM search_docs WHERE model_keys @> %s::text[]",
                         ([f"{model}@{version}"],)) == 0:
                raise LookupError(f"no document holds {model} version {version}; nothing to switch to")
            previous = catalog.set_active_version(conn, model, version)
        # re-derive each document with the new rule; every batch is its own short transaction, so
        # readers and the sink are never blocked for long and each document flips atomically
        updated, last = 0, ""
        while True:
            with db.transaction(self.settings) as conn:
                active = catalog.active_versions(conn, lock=True)
                rows = conn.execute(
                    """SELECT asset_id, versions, models FROM search_docs WHERE model_keys @> %s::text[]
                       AND asset_id > %s ORDER BY asset_id LIMIT %s FOR UPDATE""", ([model], last, batch)).fetchall()
                if not rows:
                    break
                last = rows[-1]["asset_id"]
                stale = {}
                for r in rows:
                    held = {v: kfs for v, kfs in r["versions"].get(model, {}).items() if kfs}
                    want = merge.choose_version(held, active.get(model)) if held else None
                    if r["models"].get(model, {}).get("version") != want:
                        stale[r["asset_id"]] = r["versions"]
                self._write_summaries(conn, stale, active)
                updated += len(stale)
        return Activation(model, version, previous, updated)
