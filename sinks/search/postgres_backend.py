"""PostgreSQL as the search engine: tsvector full text, GIN facets, pgvector HNSW kNN.

One row per asset in ``search_docs`` (metadata + per-model annotation summary in ``models``),
one table per embedding model ``search_vectors_<model>`` keyed by (asset, model version) so a
new model version can be backfilled beside the old one and switched atomically.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from psycopg import sql
from psycopg.types.json import Jsonb

from argus import db
from argus.db import Conn
from argus.settings import Settings
from schemas.events import Annotation, MediaUploaded
from sinks.search.fields import search_fields
from sinks.search.interface import Hit, SearchIndex, SearchQuery, SearchResult, is_newer

_MODEL_RE = re.compile(r"^[a-z0-9_]{1,40}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS search_docs (
    asset_id     text PRIMARY KEY,
    media_type   text,
    content_type text,
    filename     text,
    title        text,
    description  text,
    source       text,
    collection   text,
    uploaded_at  timestamptz,
    labels       text[] NOT NULL DEFAULT '{}',
    labels_text  text,
    models       jsonb NOT NULL DEFAULT '{}',   -- model -> {version, produced_at, annotation_id, labels}
    updated_at   timestamptz NOT NULL DEFAULT now(),
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(labels_text, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(description, '')), 'B') ||
        setweight(to_tsvector('simple', regexp_replace(coalesce(filename, ''), '[._\\-]+', ' ', 'g')), 'C')
    ) STORED
);
CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING gin (tsv);
CREATE INDEX IF NOT EXISTS search_docs_labels ON search_docs USING gin (labels);
CREATE INDEX IF NOT EXISTS search_docs_media_type ON search_docs (media_type);
CREATE INDEX IF NOT EXISTS search_docs_source ON search_docs (source);
CREATE INDEX IF NOT EXISTS search_docs_uploaded ON search_docs (uploaded_at, asset_id);
"""


def vector_table(model: str) -> sql.Identifier:
    if not _MODEL_RE.match(model):
        raise ValueError(f"invalid model name {model!r}")
    return sql.Identifier(f"search_vectors_{model}")


class PostgresSearchIndex(SearchIndex):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def ensure_schema(self) -> None:
        with db.connect(self.settings) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7245502)")
            conn.execute(SCHEMA)  # type: ignore[arg-type]

    @staticmethod
    def _ensure_vector_table(tx: Conn, model: str, dim: int) -> None:
        t = vector_table(model)
        tx.execute(
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {t} (
                       asset_id text NOT NULL, model_version text NOT NULL, embedding vector({dim}) NOT NULL,
                       PRIMARY KEY (asset_id, model_version))"""
            ).format(t=t, dim=sql.Literal(dim))
        )
        tx.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} USING hnsw (embedding vector_cosine_ops)").format(
                i=sql.Identifier(f"search_vectors_{model}_hnsw"), t=t
            )
        )

    # -- writes (inside the sink's transaction) ---------------------------------------------
    def upsert_assets(self, tx: Conn, events: list[MediaUploaded]) -> int:
        for e in events:
            tx.execute(
                """INSERT INTO search_docs (asset_id, media_type, content_type, filename, title, description,
                                            source, collection, uploaded_at)
                   VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)
                   ON CONFLICT (asset_id) DO UPDATE SET
                     media_type=EXCLUDED.media_type, content_type=EXCLUDED.content_type,
                     filename=EXCLUDED.filename, title=EXCLUDED.title, description=EXCLUDED.description,
                     source=EXCLUDED.source, collection=EXCLUDED.collection, uploaded_at=EXCLUDED.uploaded_at,
                     updated_at=now()""",
                (e.asset_id, e.media_type, e.content_type, e.filename, e.title, e.description, e.source,
                 e.collection, e.occurred_at),
            )
        return len(events)

    def apply_annotations(self, tx: Conn, events: list[Annotation]) -> int:
        applied = 0
        for a in events:
            row = tx.execute(
                "SELECT models FROM search_docs WHERE asset_id=%s FOR UPDATE", (a.asset_id,)
            ).fetchone()
            if row is None:
                # the annotation overtook its upload event: create the doc, metadata arrives later
                tx.execute("INSERT INTO search_docs (asset_id) VALUES (%s) ON CONFLICT DO NOTHING", (a.asset_id,))
                models: dict[str, Any] = {}
            else:
                models = dict(row["models"])
            f = search_fields(a.payload)
            entry = {
                "version": a.model_version,
                "produced_at": a.occurred_at.isoformat(),
                "annotation_id": a.annotation_id,
                "labels": f.labels,
                "text": f.text,
                "numeric": f.numeric,
            }
            if f.embedding is not None:
                self._ensure_vector_table(tx, a.model, len(f.embedding))
                tx.execute(
                    sql.SQL(
                        """INSERT INTO {t} (asset_id, model_version, embedding) VALUES (%s,%s,%s)
                           ON CONFLICT (asset_id, model_version) DO UPDATE SET embedding=EXCLUDED.embedding"""
                    ).format(t=vector_table(a.model)),
                    (a.asset_id, a.model_version, np.asarray(f.embedding, dtype=np.float32)),
                )
            if not is_newer(models.get(a.model), entry):
                continue
            models[a.model] = entry
            labels = sorted({lb for m in models.values() for lb in m["labels"]})
            text = " ".join([*labels, *(m.get("text", "") for m in models.values())]).strip()
            tx.execute(
                """UPDATE search_docs SET models=%s, labels=%s, labels_text=%s, updated_at=now()
                   WHERE asset_id=%s""",
                (Jsonb(models), labels, text, a.asset_id),
            )
            applied += 1
        return applied

    # -- reads --------------------------------------------------------------------------------
    def _where(self, q: SearchQuery) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        if q.text and q.text.strip():
            clauses.append(sql.SQL("tsv @@ websearch_to_tsquery('english', %s)"))
            params.append(q.text)
        for col, val in (("media_type", q.media_type), ("source", q.source), ("collection", q.collection)):
            if val is not None:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(col)))
                params.append(val)
        if q.labels:
            clauses.append(sql.SQL("labels @> %s"))
            params.append([lb.lower() for lb in q.labels])
        if q.uploaded_from is not None:
            clauses.append(sql.SQL("uploaded_at >= %s"))
            params.append(q.uploaded_from)
        if q.uploaded_to is not None:
            clauses.append(sql.SQL("uploaded_at < %s"))
            params.append(q.uploaded_to)
        return sql.SQL(" AND ").join(clauses), params

    def search(self, q: SearchQuery) -> SearchResult:
        where, params = self._where(q)
        has_text = bool(q.text and q.text.strip())
        score = (
            sql.SQL("ts_rank_cd(tsv, websearch_to_tsquery('english', %s))") if has_text else sql.SQL("0.0")
        )
        headline = (
            sql.SQL(
                "ts_headline('english', concat_ws(' | ', title, labels_text, description, filename), "
                "websearch_to_tsquery('english', %s), 'MaxFragments=2, MaxWords=12, MinWords=3')"
            )
            if has_text
            else sql.SQL("NULL")
        )
        order = sql.SQL("score DESC, asset_id") if has_text else sql.SQL("uploaded_at DESC NULLS LAST, asset_id")
        query = sql.SQL(
            """SELECT asset_id, {score} AS score, filename, title, media_type, labels, {headline} AS highlight
               FROM search_docs WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s"""
        ).format(score=score, headline=headline, where=where, order=order)
        head_params = ([q.text, q.text] if has_text else []) + params + [q.limit, q.offset]
        with db.connect(self.settings) as conn:
            rows = conn.execute(query, head_params).fetchall()
            total_row = conn.execute(sql.SQL("SELECT count(*) AS n FROM search_docs WHERE {w}").format(w=where),
                                     params).fetchone()
            total = total_row["n"] if total_row else 0
            facets = {f: self._facet(conn, f, where, params, q.facet_size) for f in q.facets}
        hits = [Hit(r["asset_id"], float(r["score"]), r["filename"], r["title"], r["media_type"],
                    list(r["labels"]), r["highlight"]) for r in rows]
        return SearchResult(total=total, hits=hits, facets=facets)

    @staticmethod
    def _facet(conn: Conn, field: str, where: sql.Composable, params: list[Any],
               size: int) -> dict[str, int]:
        value = sql.SQL("unnest(labels)") if field == "labels" else sql.Identifier(field)
        rows = conn.execute(
            sql.SQL(
                """SELECT v, count(*) AS n FROM (SELECT {value} AS v FROM search_docs WHERE {where}) s
                   WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT %s"""
            ).format(value=value, where=where),
            [*params, size],
        ).fetchall()
        return {r["v"]: r["n"] for r in rows}

    def similar(self, asset_id: str, model: str, k: int = 10) -> list[Hit]:
        t = vector_table(model)
        with db.connect(self.settings) as conn:
            doc = conn.execute("SELECT models FROM search_docs WHERE asset_id=%s", (asset_id,)).fetchone()
            if doc is None or model not in doc["models"]:
                raise LookupError(f"asset {asset_id} has no {model} embedding (yet)")
            version = doc["models"][model]["version"]
            vec = conn.execute(
                sql.SQL("SELECT embedding FROM {t} WHERE asset_id=%s AND model_version=%s").format(t=t),
                (asset_id, version),
            ).fetchone()
            if vec is None:
                raise LookupError(f"asset {asset_id} has no {model} {version} embedding")
            # the query vector must be a parameter (not a join) for the HNSW index to be used
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
            rows = conn.execute(
                sql.SQL(
                    """SELECT v.asset_id, 1 - (v.embedding <=> %s) AS score,
                              d.filename, d.title, d.media_type, d.labels
                       FROM {t} v JOIN search_docs d USING (asset_id)
                       WHERE v.model_version=%s AND v.asset_id <> %s
                       ORDER BY v.embedding <=> %s LIMIT %s"""
                ).format(t=t),
                (vec["embedding"], version, asset_id, vec["embedding"], k),
            ).fetchall()
        return [Hit(r["asset_id"], float(r["score"]), r["filename"], r["title"], r["media_type"],
                    list(r["labels"])) for r in rows]

    def count(self) -> int:
        with db.connect(self.settings) as conn:
            return int(db.scalar(conn, "SELECT count(*) FROM search_docs WHERE models <> '{}'"))

    def get(self, asset_id: str) -> dict[str, Any] | None:
        with db.connect(self.settings) as conn:
            row = conn.execute(
                "SELECT asset_id, media_type, filename, title, labels, models FROM search_docs WHERE asset_id=%s",
                (asset_id,),
            ).fetchone()
        return dict(row) if row else None
