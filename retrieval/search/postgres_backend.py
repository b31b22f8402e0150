"""PostgreSQL search, the read side: tsvector full text, GIN facets, pgvector HNSW kNN.

The documents and vector tables are written by ``sinks.search.postgres_backend`` (the writer this
class extends; its module docstring describes the layout). Queries read what each document derived
from its annotation history (``labels``, ``text_extra``, ``numeric``, ``models``) and the vectors of
each model's ACTIVE version (``search_model_versions``, sinks/search/catalog.py).

Reads go through a small connection pool per database (a TCP connect costs more than a query).
"""

from __future__ import annotations

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
from psycopg_pool import ConnectionPool

from core import db
from core.db import Conn
from core.settings import Settings
from retrieval.search.interface import (
    FACE_BUCKETS,
    FLAG_KEYS,
    PHOTO_FACETS,
    Hit,
    QueryError,
    SearchIndex,
    SearchQuery,
    SearchResult,
    VectorModel,
)
from sinks.search import catalog
from sinks.search.interface import Activation
from sinks.search.postgres_backend import PostgresSearchWriter, vector_cast, vector_table

ACTIVE_TTL_S = 1.0

HEADLINE_DOC = "concat_ws(' | ', d.title, d.meta_text, d.labels_text, d.description, d.text_extra, d.filename)"
DISPLAY = sql.SQL("d.asset_id, d.filename, d.title, d.media_type, d.labels, d.uploaded_at")

# an asset that is killed, deleted or embargoed is invisible; an embargo lifts by itself when its time comes
HIDDEN_SQL = ("NOT EXISTS (SELECT 1 FROM asset_lifecycle l WHERE l.asset_id = d.asset_id "
              "AND (l.state <> 'active' OR l.embargo_until > now()))")

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


class PostgresSearchIndex(PostgresSearchWriter, SearchIndex):
    """The writer plus the queries: what the API, the CLI and the benchmarks use."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._active_cache: dict[str, tuple[float, str, int]] = {}  # model -> (when, version, dim)

    @contextmanager
    def _read(self) -> Iterator[Conn]:
        with _pool(self.settings).connection() as conn:
            yield conn

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
        if not q.include_hidden:  # killed, deleted or under embargo (docs/metadata.md): released on time
            clauses.append(sql.SQL(HIDDEN_SQL))
        # people (docs/people.md): a person given by id or by name (case-insensitive); AND = one EXISTS each
        for group in [[v] for v in q.persons] + ([list(q.any_persons)] if q.any_persons else []):
            clauses.append(sql.SQL(
                "EXISTS (SELECT 1 FROM people_faces pf JOIN people_persons pp ON pp.person_id = pf.person_id "
                "WHERE pf.asset_id = d.asset_id AND (pp.person_id = ANY(%s) OR lower(pp.name) = ANY(%s)))"))
            params += [group, [v.lower() for v in group]]
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
                    "(SELECT v, count(*) AS n FROM m, unnest(m.labels) v WHERE v !~ {prefixed} "
                    "GROUP BY v ORDER BY n DESC, v LIMIT %s) x)").format(  # "credit:afp" counts as a credit only
                    prefixed=sql.Literal("^(" + "|".join(PHOTO_FACETS) + "):")))
                params.append(q.facet_size)
            elif f in PHOTO_FACETS:  # prefixed labels ("credit:afp" -> "afp")
                cols["labels"] = sql.SQL("d.labels")
                parts.append(sql.SQL(
                    "(SELECT coalesce(json_agg(json_build_array(v, n) ORDER BY n DESC, v), '[]') FROM "
                    "(SELECT substr(l, {n}) AS v, count(*) AS n FROM m, unnest(m.labels) l WHERE starts_with(l, {p}) "
                    "GROUP BY 1 ORDER BY n DESC, v LIMIT %s) x)").format(
                    n=sql.Literal(len(f) + 2), p=sql.Literal(f + ":")))
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
            elif f == "persons":  # assets per (visible) person
                cols["pf_asset_id"] = sql.SQL("d.asset_id")
                parts.append(sql.SQL(
                    "(SELECT coalesce(json_agg(json_build_array(v, n) ORDER BY n DESC, v), '[]') FROM "
                    "(SELECT pf.person_id AS v, count(DISTINCT m.pf_asset_id) AS n FROM m "
                    "JOIN people_faces pf ON pf.asset_id = m.pf_asset_id "
                    "JOIN people_persons pp ON pp.person_id = pf.person_id WHERE NOT pp.hidden "
                    "GROUP BY 1 ORDER BY n DESC, v LIMIT %s) x)"))
                params.append(q.facet_size)
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
            expr = vector_cast(dim)
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
        act = super().activate_version(model, version, batch)
        self._active_cache.pop(model, None)  # this process's queries see the switch at once
        return act

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
