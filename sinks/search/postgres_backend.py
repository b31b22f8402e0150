"""PostgreSQL as the search engine: tsvector full text, GIN facets, pgvector HNSW kNN.

One row per asset in ``search_docs``: metadata, every annotation's search fields by model, version
and keyframe (``versions``, see merge.py) and what queries use, derived from it (``labels``,
``text_extra``, ``numeric`` as jsonb so a new model's numbers need no schema change, ``models``).
One table per embedding model ``search_vectors_<model>`` keyed by (asset, model version), with one
partial HNSW index per version: a new version is backfilled beside the old one and switched with
one row in ``search_model_versions`` (catalog.py).

Reads go through a small connection pool per database (a TCP connect costs more than a query).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from core import db
from core.db import Conn
from core.settings import Settings
from schemas.events import Annotation, MediaUploaded
from sinks.search import catalog, merge
from sinks.search.fields import search_fields
from sinks.search.interface import (
    FACE_BUCKETS,
    FLAG_KEYS,
    Activation,
    Hit,
    QueryError,
    SearchIndex,
    SearchQuery,
    SearchResult,
    VectorModel,
)

_MODEL_RE = re.compile(r"^[a-z0-9_]{1,40}$")
ACTIVE_TTL_S = 1.0

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
    models       jsonb NOT NULL DEFAULT '{}',   -- model -> summary of the version queries use
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- added after the first release: ADD COLUMN IF NOT EXISTS keeps older databases working
ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS text_extra text;                       -- OCR, captions
ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS numeric jsonb NOT NULL DEFAULT '{}';   -- face_count, nsfw...
ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS versions jsonb NOT NULL DEFAULT '{}';  -- merge.Versions
ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS model_keys text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS search_docs_labels ON search_docs USING gin (labels);
CREATE INDEX IF NOT EXISTS search_docs_model_keys ON search_docs USING gin (model_keys);
CREATE INDEX IF NOT EXISTS search_docs_media_type ON search_docs (media_type);
CREATE INDEX IF NOT EXISTS search_docs_source ON search_docs (source);
CREATE INDEX IF NOT EXISTS search_docs_collection ON search_docs (collection);
CREATE INDEX IF NOT EXISTS search_docs_uploaded ON search_docs (uploaded_at, asset_id);
CREATE TABLE IF NOT EXISTS search_vector_meta (
    model         text NOT NULL,
    model_version text NOT NULL,
    dim           integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, model_version)
);
"""

TSV_MARK = "text_extra"  # the generated column is rebuilt when its expression predates this field
TSV = r"""
ALTER TABLE search_docs ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(labels_text, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(description, '')), 'B') ||
    setweight(to_tsvector('english', coalesce(text_extra, '')), 'B') ||
    setweight(to_tsvector('simple', regexp_replace(coalesce(filename, ''), '[._\-]+', ' ', 'g')), 'C')
) STORED;
CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING gin (tsv);
"""
HEADLINE_DOC = "concat_ws(' | ', d.title, d.labels_text, d.description, d.text_extra, d.filename)"
DISPLAY = sql.SQL("d.asset_id, d.filename, d.title, d.media_type, d.labels, d.uploaded_at")

_POOLS: dict[str, ConnectionPool[Conn]] = {}
_POOLS_LOCK = threading.Lock()


def _configure(conn: Conn) -> None:
    register_vector(conn)


def _pool(settings: Settings) -> ConnectionPool[Conn]:
    """One small pool per database, shared by every index object of this process."""
    dsn = settings.postgres_dsn
    with _POOLS_LOCK:
        pool = _POOLS.get(dsn)
        if pool is None:
            pool = ConnectionPool(dsn, kwargs={"row_factory": dict_row, "autocommit": True}, min_size=0,
                                  max_size=8, max_idle=60, configure=_configure, check=ConnectionPool.check_connection,
                                  open=True, name=f"search-{settings.postgres.database}")
            _POOLS[dsn] = pool
        return pool


def vector_table(model: str) -> sql.Identifier:
    if not _MODEL_RE.match(model):
        raise ValueError(f"invalid model name {model!r}")
    return sql.Identifier(f"search_vectors_{model}")


def _index_name(model: str, version: str) -> str:
    return f"svh_{model}_{hashlib.sha256(version.encode()).hexdigest()[:10]}"


def _cast(dim: int) -> sql.Composable:
    """Vectors are stored untyped (versions may differ in size); each version's HNSW index and its
    queries use the same cast expression, which is how pgvector indexes mixed dimensions."""
    return sql.SQL("(v.embedding::vector({}))").format(sql.Literal(dim))


class PostgresSearchIndex(SearchIndex):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ensured: dict[tuple[str, str], int] = {}  # (model, version) -> dim, vector storage ensured
        self._active_cache: dict[str, tuple[float, str, int]] = {}  # model -> (when, version, dim)

    # ------------------------------------------------------------------------------ schema
    def ensure_schema(self) -> None:
        catalog.ensure_schema(self.settings)
        with db.connect(self.settings) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7245502)")
            conn.execute(SCHEMA)  # type: ignore[arg-type]  # static DDL
            expr = conn.execute(
                """SELECT pg_get_expr(d.adbin, d.adrelid) AS e FROM pg_attrdef d
                   JOIN pg_attribute a ON a.attrelid=d.adrelid AND a.attnum=d.adnum
                   WHERE d.adrelid='search_docs'::regclass AND a.attname='tsv'"""
            ).fetchone()
            if expr is None or TSV_MARK not in expr["e"]:
                conn.execute("ALTER TABLE search_docs DROP COLUMN IF EXISTS tsv")
                conn.execute(TSV)  # type: ignore[arg-type]

    @contextmanager
    def _read(self) -> Iterator[Conn]:
        with _pool(self.settings).connection() as conn:
            yield conn

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
        fields = [search_fields(a.payload) for a in events]
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
                         Jsonb(s.numeric), s.model_keys, asset_id))
        tx.cursor().executemany(
            """UPDATE search_docs SET versions=%s, models=%s, labels=%s, labels_text=%s, text_extra=%s,
                      numeric=%s, model_keys=%s, updated_at=now() WHERE asset_id=%s""", rows)

    # ------------------------------------------------------------------------------ filters
    def _where(self, q: SearchQuery, text: bool = True) -> tuple[sql.Composable, list[Any]]:
        q.validate()
        clauses: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        if text and q.has_text:
            clauses.append(sql.SQL("d.tsv @@ websearch_to_tsquery('english', %s)"))
            params.append(q.text)
        for col, val in (("media_type", q.media_type), ("source", q.source), ("collection", q.collection)):
            if val is not None:
                clauses.append(sql.SQL("d.{} = %s").format(sql.Identifier(col)))
                params.append(val)
        if q.labels:
            clauses.append(sql.SQL("d.labels @> %s::text[]"))
            params.append([lb.lower() for lb in q.labels])
        if q.any_labels:
            clauses.append(sql.SQL("d.labels && %s::text[]"))
            params.append([lb.lower() for lb in q.any_labels])
        if q.exclude_labels:
            clauses.append(sql.SQL("NOT d.labels && %s::text[]"))
            params.append([lb.lower() for lb in q.exclude_labels])
        if q.uploaded_from is not None:
            clauses.append(sql.SQL("d.uploaded_at >= %s"))
            params.append(q.uploaded_from)
        if q.uploaded_to is not None:
            clauses.append(sql.SQL("d.uploaded_at < %s"))
            params.append(q.uploaded_to)
        for r in q.numeric:
            for op, bound in ((">=", r.gte), ("<=", r.lte)):
                if bound is not None:
                    clauses.append(sql.SQL("(d.numeric->>%s)::float8 " + op + " %s"))
                    params += [r.key, bound]
            if r.gte is None and r.lte is None:
                clauses.append(sql.SQL("d.numeric ? %s"))
                params.append(r.key)
        threshold = self.settings.search.flag_threshold
        for key, mode in q.flags:
            # a flag is set by a score (numeric[key] >= threshold) or as a label (video summaries)
            flagged = sql.SQL("(coalesce((d.numeric->>%s)::float8, 0) >= %s OR d.labels @> ARRAY[%s]::text[])")
            if mode == "exclude":
                clauses.append(sql.SQL("NOT {}").format(flagged))
            elif mode == "only":
                clauses.append(flagged)
            else:
                continue
            params += [key, threshold, key]
        if q.project is not None:
            clauses.append(sql.SQL(
                "EXISTS (SELECT 1 FROM project_assets pa WHERE pa.project_id=%s AND pa.asset_id=d.asset_id)"))
            params.append(q.project)
        if q.asset_ids is not None:
            clauses.append(sql.SQL("d.asset_id = ANY(%s)"))
            params.append(list(q.asset_ids))
        return sql.SQL(" AND ").join(clauses), params

    def _facet_sql(self, q: SearchQuery) -> tuple[list[str], list[sql.Composable], list[Any], list[sql.Composable]]:
        """Facet aggregates over the materialised match set ``m``, and the (few) columns ``m`` needs:
        the match set is copied once, so it carries only what the requested facets read."""
        names: list[str] = []
        parts: list[sql.Composable] = []
        params: list[Any] = []
        cols: dict[str, sql.Composable] = {}
        threshold = self.settings.search.flag_threshold
        for f in q.facets:
            names.append(f)
            if f == "labels":
                cols["labels"] = sql.SQL("d.labels")
                parts.append(sql.SQL(
                    "(SELECT coalesce(json_agg(json_build_array(v, n) ORDER BY n DESC, v), '[]') FROM "
                    "(SELECT v, count(*) AS n FROM m, unnest(m.labels) v GROUP BY v ORDER BY n DESC, v LIMIT %s) x)"))
                params.append(q.facet_size)
            elif f in ("media_type", "source", "collection"):
                cols[f] = sql.SQL("d.{}").format(sql.Identifier(f))
                parts.append(sql.SQL(
                    "(SELECT coalesce(json_agg(json_build_array(v, n) ORDER BY n DESC, v), '[]') FROM "
                    "(SELECT m.{c} AS v, count(*) AS n FROM m WHERE m.{c} IS NOT NULL GROUP BY 1 "
                    "ORDER BY n DESC, v LIMIT %s) x)").format(c=sql.Identifier(f)))
                params.append(q.facet_size)
            elif f == "flags":
                items: list[sql.Composable] = []
                for key in FLAG_KEYS:
                    col = f"flag_{key}"
                    # a flag is set by a score or as a label (video summaries), as in _where
                    cols[col] = sql.SQL("(coalesce((d.numeric->>{k})::float8, 0) >= {t} "
                                        "OR d.labels @> ARRAY[{k}]::text[])").format(
                        k=sql.Literal(key), t=sql.Literal(threshold))
                    items.append(sql.SQL("json_build_array({k}::text, count(*) FILTER (WHERE m.{c}))").format(
                        k=sql.Literal(key), c=sql.Identifier(col)))
                parts.append(sql.SQL("(SELECT json_build_array({}) FROM m)").format(sql.SQL(", ").join(items)))
            elif f == "face_count":
                cols["face_count"] = sql.SQL("(d.numeric->>'face_count')::float8")
                items = []
                for label, lo, hi in FACE_BUCKETS:
                    cond = "m.face_count >= %s" + (" AND m.face_count <= %s" if hi is not None else "")
                    items.append(sql.SQL("json_build_array(%s::text, count(*) FILTER (WHERE " + cond + "))"))
                    params += [label, lo] + ([hi] if hi is not None else [])
                parts.append(sql.SQL("(SELECT json_build_array({}) FROM m)").format(sql.SQL(", ").join(items)))
        col_sql: list[sql.Composable] = [sql.SQL("{} AS {}").format(expr, sql.Identifier(name))
                                         for name, expr in cols.items()]
        return names, parts, params, col_sql

    # ------------------------------------------------------------------------------ reads
    def search(self, q: SearchQuery) -> SearchResult:
        where, params = self._where(q)
        has_text = q.has_text
        # ts_rank (term frequency, A/B/C weights) rather than ts_rank_cd: no cover-density pass over the
        # positions, measurably cheaper when thousands of documents match (docs/search.md)
        score = sql.SQL("ts_rank(d.tsv, websearch_to_tsquery('english', %s))") if has_text else sql.SQL("0.0")
        score_params = [q.text] if has_text else []
        if has_text and q.sort == "relevance":
            order = "{p}score DESC, {p}asset_id"
        elif q.sort == "oldest":
            order = "{p}uploaded_at ASC NULLS LAST, {p}asset_id"
        else:
            order = "{p}uploaded_at DESC NULLS LAST, {p}asset_id"
        headline = sql.SQL(
            "ts_headline('english', " + HEADLINE_DOC + ", websearch_to_tsquery('english', %s), "
            "'MaxFragments=2, MaxWords=12, MinWords=3')") if has_text else sql.SQL("NULL")
        # the page first, highlights only for its rows (ts_headline is the expensive part)
        page_sql = sql.SQL(
            """SELECT p.score, {headline} AS highlight, {display}
               FROM (SELECT d.asset_id, d.uploaded_at, {score} AS score FROM search_docs d WHERE {where}
                     ORDER BY {order} LIMIT %s OFFSET %s) p
               JOIN search_docs d USING (asset_id) ORDER BY {porder}""").format(
            headline=headline, display=DISPLAY, score=score, where=where, order=sql.SQL(order.format(p="")),
            porder=sql.SQL(order.format(p="p.")))
        page_params = ([q.text] if has_text else []) + score_params + params + [q.limit, q.offset]
        names, parts, fparams, cols = self._facet_sql(q)
        if has_text:
            return self._search_text(q, where, params, score, order, headline, names, parts, fparams, cols)
        if parts:
            agg_sql = sql.SQL(
                "WITH m AS MATERIALIZED (SELECT {cols} FROM search_docs d WHERE {where}) "
                "SELECT (SELECT count(*) FROM m) AS total, {parts}").format(
                cols=sql.SQL(", ").join(cols), where=where,
                parts=sql.SQL(", ").join(sql.SQL("{} AS {}").format(p, sql.Identifier(f"f_{n}"))
                                         for p, n in zip(parts, names, strict=True)))
        else:
            agg_sql = sql.SQL("SELECT count(*) AS total FROM search_docs d WHERE {where}").format(where=where)
        with self._read() as conn:
            rows = conn.execute(page_sql, page_params).fetchall() if q.limit > 0 else []
            agg = conn.execute(agg_sql, params + fparams).fetchone()
        assert agg is not None
        facets = {n: {str(k): int(v) for k, v in (agg[f"f_{n}"] or [])} for n in names}
        return SearchResult(total=int(agg["total"]), hits=[self._hit(r) for r in rows], facets=facets)

    def _search_text(self, q: SearchQuery, where: sql.Composable, params: list[Any], score: sql.Composable,
                     order: str, headline: sql.Composable, names: list[str], parts: list[sql.Composable],
                     fparams: list[Any], cols: list[sql.Composable]) -> SearchResult:
        """A text query in ONE statement: the match set is scanned and ranked once, then the page, the
        total and the facets are all read from it (a second scan cost ~40% at 100k docs)."""
        facet_cols = sql.SQL("").join(sql.SQL(", {}").format(c) for c in cols)
        facet_parts = sql.SQL("").join(sql.SQL(", {} AS {}").format(p, sql.Identifier(f"f_{n}"))
                                       for p, n in zip(parts, names, strict=True))
        stmt = sql.SQL(
            """WITH m AS MATERIALIZED (SELECT d.asset_id, d.uploaded_at, {score} AS score{fcols}
                                      FROM search_docs d WHERE {where}),
                    page AS (SELECT asset_id, uploaded_at, score FROM m ORDER BY {order} LIMIT %s OFFSET %s)
               SELECT (SELECT count(*) FROM m) AS total{fparts},
                      (SELECT coalesce(json_agg(h ORDER BY h.ord), '[]') FROM (
                          SELECT p.score, {headline} AS highlight, {display},
                                 row_number() OVER (ORDER BY {porder}) AS ord
                          FROM page p JOIN search_docs d USING (asset_id)) h) AS hits""").format(
            score=score, fcols=facet_cols, where=where, order=sql.SQL(order.format(p="")), fparts=facet_parts,
            headline=headline, display=DISPLAY, porder=sql.SQL(order.format(p="p.")))
        args = [q.text, *params, q.limit, q.offset, *fparams, q.text]
        with self._read() as conn:
            row = conn.execute(stmt, args).fetchone()
        assert row is not None
        hits = [Hit(h["asset_id"], float(h["score"]), h["filename"], h["title"], h["media_type"], list(h["labels"]),
                    h["highlight"], datetime.fromisoformat(h["uploaded_at"]) if h["uploaded_at"] else None)
                for h in row["hits"]]
        facets = {n: {str(k): int(v) for k, v in (row[f"f_{n}"] or [])} for n in names}
        return SearchResult(total=int(row["total"]), hits=hits, facets=facets)

    @staticmethod
    def _hit(r: dict[str, Any]) -> Hit:
        return Hit(r["asset_id"], float(r["score"]), r["filename"], r["title"], r["media_type"], list(r["labels"]),
                   r.get("highlight"), r["uploaded_at"])

    def _active(self, conn: Conn, model: str) -> tuple[str, int]:
        """(active version, dim), cached for a second: a switch is seen by every reader within 1 s,
        and queries save a round trip."""
        hit = self._active_cache.get(model)
        now = time.monotonic()
        if hit is not None and now - hit[0] < ACTIVE_TTL_S:
            return hit[1], hit[2]
        row = conn.execute(
            """SELECT v.active_version, m.dim FROM search_model_versions v
               JOIN search_vector_meta m ON m.model=v.model AND m.model_version=v.active_version
               WHERE v.model=%s""", (model,)).fetchone()
        if row is None:
            raise LookupError(f"no {model} embeddings are indexed (yet)")
        self._active_cache[model] = (now, row["active_version"], int(row["dim"]))
        return row["active_version"], int(row["dim"])

    def knn(self, model: str, vector: Sequence[float], k: int = 10, query: SearchQuery | None = None,
            exclude: str | None = None) -> list[Hit]:
        t = vector_table(model)
        q = (query or SearchQuery()).filters_only()
        where, params = self._where(q, text=False)
        vec = np.asarray(vector, dtype=np.float32)
        with self._read() as conn:
            version, dim = self._active(conn, model)
            if vec.shape != (dim,):
                raise QueryError(f"{model} {version} vectors have {dim} dims; the query vector has {vec.shape[0]}")
            expr = _cast(dim)
            inner = sql.SQL(
                """SELECT {display}, {e} <=> %s::vector AS dist FROM {t} v JOIN search_docs d USING (asset_id)
                   WHERE v.model_version = {ver} AND {where} {excl} ORDER BY {e} <=> %s::vector LIMIT %s""").format(
                display=DISPLAY, e=expr, t=t, ver=sql.Literal(version), where=where,
                excl=sql.SQL("AND v.asset_id <> %s") if exclude else sql.SQL(""))
            # relaxed_order: pgvector returns rows slightly out of order, so they are re-sorted outside
            stmt = sql.SQL("SELECT * FROM ({}) c ORDER BY dist, asset_id").format(inner)
            args = [vec, *params, *([exclude] if exclude else []), vec, k]
            with conn.transaction():
                # one round trip for both settings (transaction-local, like SET LOCAL)
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true), "
                             "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                             (str(max(k, self.settings.search.hnsw_ef_search)),))
                rows = conn.execute(stmt, args).fetchall()
                if len(rows) < k and q.has_filters:
                    # a very selective filter can exhaust the iterative scan: answer exactly instead
                    conn.execute("SET LOCAL enable_indexscan = off")
                    rows = conn.execute(stmt, args).fetchall()
        return [Hit(r["asset_id"], 1.0 - float(r["dist"]), r["filename"], r["title"], r["media_type"],
                    list(r["labels"]), None, r["uploaded_at"]) for r in rows]

    def vector_of(self, asset_id: str, model: str) -> list[float] | None:
        t = vector_table(model)
        with self._read() as conn:
            try:
                version, _ = self._active(conn, model)
            except LookupError:
                return None
            row = conn.execute(sql.SQL("SELECT embedding FROM {t} WHERE asset_id=%s AND model_version=%s").format(t=t),
                               (asset_id, version)).fetchone()
        if row is None:
            return None
        v = row["embedding"]
        return [float(x) for x in (v.to_numpy() if hasattr(v, "to_numpy") else v)]

    def iter_asset_ids(self, query: SearchQuery, batch: int = 1000) -> Iterator[str]:
        where, params = self._where(query)
        with db.connect(self.settings) as conn, conn.transaction(), conn.cursor(name="argus_iter_ids") as cur:
            cur.itersize = batch
            cur.execute(sql.SQL("SELECT d.asset_id FROM search_docs d WHERE {w} ORDER BY d.asset_id").format(w=where),
                        params)
            for r in cur:
                yield r["asset_id"]

    # ------------------------------------------------------------------------------ versions
    def vector_models(self) -> list[VectorModel]:
        with self._read() as conn:
            metas = conn.execute("SELECT model, model_version, dim FROM search_vector_meta ORDER BY 1, 2").fetchall()
            active = catalog.active_versions(conn)
            out: dict[str, VectorModel] = {}
            for m in metas:
                row = conn.execute(sql.SQL("SELECT count(*) AS n FROM {t} WHERE model_version=%s").format(
                    t=vector_table(m["model"])), (m["model_version"],)).fetchone()
                n = row["n"] if row else 0
                vm = out.setdefault(m["model"], VectorModel(m["model"], active.get(m["model"]), {}, m["dim"]))
                vm.versions[m["model_version"]] = int(n)
                if m["model_version"] == vm.active_version:
                    vm.dim = m["dim"]
        return list(out.values())

    def activate_version(self, model: str, version: str, batch: int = 500) -> Activation:
        with db.transaction(self.settings) as conn:
            if db.scalar(conn, "SELECT count(*) FROM search_docs WHERE model_keys @> %s::text[]",
                         ([f"{model}@{version}"],)) == 0:
                raise LookupError(f"no document holds {model} version {version}; nothing to switch to")
            previous = catalog.set_active_version(conn, model, version)
        self._active_cache.pop(model, None)
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

    # ------------------------------------------------------------------------------ misc
    def count(self) -> int:
        with self._read() as conn:
            return int(db.scalar(conn, "SELECT count(*) FROM search_docs WHERE models <> '{}'"))

    def get(self, asset_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(
                """SELECT asset_id, media_type, filename, title, description, source, collection, uploaded_at,
                          labels, text_extra, numeric, models, model_keys FROM search_docs WHERE asset_id=%s""",
                (asset_id,)).fetchone()
        return dict(row) if row else None
