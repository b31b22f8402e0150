"""OpenSearch as the search engine (the scale-out deployment; compose/ runs OpenSearch 2.19).

Layout (every name starts with ``opensearch.index_prefix``):

- ``assets`` alias -> ``assets-000001`` (index template ``assets``): one document per asset,
  ``_id`` = asset id: metadata, labels (keyword), text fields with the english analyzer, ``numeric.*``
  as floats (dynamic template: a new model's numbers need no mapping change), and the merged
  annotation history (``versions``, stored, not indexed; merge.py).
- ``vec-<model>-<version>``: one k-NN index per embedding model AND version (``knn_vector``, HNSW,
  faiss, cosine), ``_id`` = asset id, plus copies of the filter fields for efficient k-NN filtering.
  Alias ``vec-<model>`` names the active version: switching a version = one atomic alias swap.

Idempotence and ordering:

- vector documents are written with ``version_type=external`` and version = ``produced_at`` in
  microseconds, so a replay (same version) or an older event is rejected by the engine (409, ignored);
- the asset document merges annotations from many models, so one external version cannot order it:
  it is read, merged with the same convergent rule as PostgreSQL (merge.py) and written back with
  ``if_seq_no``/``if_primary_term`` (optimistic concurrency); a conflict re-reads and re-merges.

kNN results are re-checked against the assets index with the full filter (the copies of the filter
fields in a vector index may lag a concurrent update) and take their display fields from there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import NotFoundError

from core.db import Conn
from core.settings import Settings
from schemas.events import Annotation, MediaUploaded
from sinks.search import catalog, merge
from sinks.search.fields import SearchFields, search_fields
from sinks.search.interface import (
    FACE_BUCKETS,
    FLAG_KEYS,
    Activation,
    Hit,
    SearchIndex,
    SearchQuery,
    SearchResult,
    VectorModel,
)

TEXT_FIELDS = ["title^4", "labels_text^4", "description^2", "text_extra^2", "filename_text"]
HIGHLIGHT_FIELDS = ("title", "labels_text", "description", "text_extra", "filename_text")
DISPLAY = ["asset_id", "filename", "title", "media_type", "labels", "uploaded_at"]
FILTER_FIELDS = ("media_type", "source", "collection", "uploaded_at", "labels", "numeric")
KW = {"type": "keyword"}
EN = {"type": "text", "analyzer": "english"}
MAX_RETRIES = 20


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _micros(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def filename_text(name: str | None) -> str:
    """The filename split the way the PostgreSQL backend splits it (IMG_0042.jpg -> IMG 0042 jpg)."""
    import re

    return re.sub(r"[._\-]+", " ", name or "").strip()


def websearch_to_simple(text: str) -> str:
    """Web-search syntax (shared with PostgreSQL's websearch_to_tsquery) -> simple_query_string:
    words AND-ed, "phrases" and -exclusions kept, the word ``or`` becomes ``|``."""
    import re

    out = []
    for tok in text.split():
        if tok.lower() == "or":
            out.append("|")
            continue
        # split words the way PostgreSQL's parser and filename_text do (IMG_0007.jpg -> IMG 0007 jpg);
        # a leading - stays the NOT operator, a phrase keeps its quotes
        lead = tok[0] if tok[0] in '-"' else ""
        out.append(lead + re.sub(r"(?<=\w)[._\-]+(?=\w)", " ", tok[len(lead):]))
    return " ".join(out)


# ------------------------------------------------------------------------------ index bodies
def assets_template(prefix: str, shards: int, replicas: int) -> dict[str, Any]:
    return {
        "index_patterns": [f"{prefix}assets-*"],
        "priority": 100,
        "template": {
            "settings": {"number_of_shards": shards, "number_of_replicas": replicas},
            "mappings": {
                "dynamic": "strict",
                "dynamic_templates": [
                    {"numeric_as_float": {"path_match": "numeric.*", "mapping": {"type": "float"}}}
                ],
                "properties": {
                    "asset_id": KW, "media_type": KW, "content_type": KW, "source": KW, "collection": KW,
                    "filename": {"type": "keyword", "ignore_above": 1024},
                    "filename_text": {"type": "text", "analyzer": "standard"},
                    "title": EN, "description": EN, "labels_text": EN, "text_extra": EN,
                    "labels": KW, "model_keys": KW,
                    "uploaded_at": {"type": "date"}, "updated_at": {"type": "date"},
                    "numeric": {"type": "object", "dynamic": True},
                    "models": {"type": "object", "enabled": False},
                    "versions": {"type": "object", "enabled": False},
                },
            },
        },
    }


def vector_index_body(dim: int, shards: int, replicas: int, model: str, version: str, m: int = 16,
                      ef_construction: int = 128) -> dict[str, Any]:
    """One k-NN index per (model, version): HNSW (faiss), cosine, efficient filtering on the copies."""
    return {
        "settings": {"index": {"knn": True, "number_of_shards": shards, "number_of_replicas": replicas}},
        "mappings": {
            "_meta": {"model": model, "version": version},
            "dynamic": "strict",
            "dynamic_templates": [{"numeric_as_float": {"path_match": "numeric.*", "mapping": {"type": "float"}}}],
            "properties": {
                "embedding": {
                    "type": "knn_vector",
                    "dimension": dim,
                    "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "faiss",
                               "parameters": {"m": m, "ef_construction": ef_construction}},
                },
                "asset_id": KW, "annotation_id": KW, "keyframe_ms": {"type": "integer"},
                "produced_at": {"type": "date"},
                "media_type": KW, "source": KW, "collection": KW, "labels": KW,
                "uploaded_at": {"type": "date"},
                "numeric": {"type": "object", "dynamic": True},
            },
        },
    }


def knn_query_body(vector: Sequence[float], k: int, filters: dict[str, Any] | None, ef_search: int,
                   field: str = "embedding") -> dict[str, Any]:
    """The k-NN query (OpenSearch k-NN plugin, ``knn`` query type, efficient filtering with ``filter``)."""
    clause: dict[str, Any] = {"vector": [float(x) for x in vector], "k": k,
                              "method_parameters": {"ef_search": max(ef_search, k)}}
    if filters:
        clause["filter"] = filters
    return {"size": k, "_source": ["asset_id"], "query": {"knn": {field: clause}}}


def cosine_from_score(score: float) -> float:
    """OpenSearch >= 2.19 scores cosinesimil as (2 - d) / 2 with d = 1 - cos."""
    return 2.0 * score - 1.0


class OpenSearchSearchIndex(SearchIndex):
    def __init__(self, settings: Settings, client: OpenSearch | None = None) -> None:
        self.settings = settings
        self.cfg = settings.opensearch
        self.prefix = self.cfg.index_prefix
        self._client = client
        self._vec_ready: dict[tuple[str, str], int] = {}

    @property
    def client(self) -> OpenSearch:
        if self._client is None:
            auth = (self.cfg.username, self.cfg.password or "") if self.cfg.username else None
            self._client = OpenSearch(hosts=[h.strip() for h in self.cfg.url.split(",")], http_auth=auth,
                                      verify_certs=self.cfg.verify_certs, timeout=self.cfg.timeout_s,
                                      max_retries=3, retry_on_timeout=True)
        return self._client

    # ---- names ---------------------------------------------------------------------------------
    @property
    def assets_alias(self) -> str:
        return f"{self.prefix}assets"

    def assets_index(self, n: int) -> str:
        return f"{self.prefix}assets-{n:06d}"

    def vec_alias(self, model: str) -> str:
        return f"{self.prefix}vec-{model}"

    def vec_index(self, model: str, version: str) -> str:
        return f"{self.prefix}vec-{model}-{catalog.version_slug(version)}"

    # ---- schema ----------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        catalog.ensure_schema(self.settings)
        c = self.client
        c.indices.put_index_template(name=f"{self.prefix}assets",
                                     body=assets_template(self.prefix, self.cfg.shards, self.cfg.replicas))
        if not c.indices.exists_alias(name=self.assets_alias):
            try:
                c.indices.create(index=self.assets_index(1),
                                 body={"aliases": {self.assets_alias: {"is_write_index": True}}})
            except Exception as exc:  # noqa: BLE001 - another process created it first
                if "already_exists" not in str(exc) and "already exists" not in str(exc):
                    raise

    def _ensure_vec_index(self, model: str, version: str, dim: int, active: bool) -> str:
        index = self.vec_index(model, version)
        known = self._vec_ready.get((model, version))
        if known is None:
            c = self.client
            if not c.indices.exists(index=index):
                try:
                    c.indices.create(index=index, body=vector_index_body(dim, self.cfg.shards, self.cfg.replicas,
                                                                               model, version))
                except Exception as exc:  # noqa: BLE001
                    if "already_exists" not in str(exc) and "already exists" not in str(exc):
                        raise
            else:
                props = next(iter(c.indices.get_mapping(index=index).values()))["mappings"]["properties"]
                known = int(props["embedding"]["dimension"])
            if active and not c.indices.exists_alias(name=self.vec_alias(model)):
                c.indices.update_aliases(body={"actions": [{"add": {"index": index, "alias": self.vec_alias(model)}}]})
            self._vec_ready[(model, version)] = known if known is not None else dim
        have = self._vec_ready[(model, version)]
        if have != dim:
            raise ValueError(f"{model} {version}: embedding has {dim} dims, the index has {have}")
        return index

    # ---- read-merge-write of asset documents ------------------------------------------------------
    def _bulk(self, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not actions:
            return []
        resp = self.client.bulk(body=actions, refresh=self.cfg.refresh)
        return [next(iter(item.values())) for item in resp["items"]]

    def _rmw(self, ids: Sequence[str],
             mutate: Callable[[str, dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
        """Read, mutate and write back asset documents with optimistic concurrency; ``mutate`` returns
        the new source or None (unchanged) and must be pure (it is re-run after a conflict)."""
        pending = list(dict.fromkeys(ids))
        written: dict[str, dict[str, Any]] = {}
        for _ in range(MAX_RETRIES):
            if not pending:
                return written
            got = self.client.mget(index=self.assets_alias, body={"ids": pending})["docs"]
            actions: list[dict[str, Any]] = []
            sources: dict[str, dict[str, Any]] = {}
            for d in got:
                src = d["_source"] if d.get("found") else None
                new = mutate(d["_id"], copy.deepcopy(src))
                if new is None:
                    continue
                new["updated_at"] = _now()
                meta: dict[str, Any] = {"_index": self.assets_alias, "_id": d["_id"]}
                if src is None:
                    actions.append({"create": meta})
                else:
                    actions.append({"index": {**meta, "if_seq_no": d["_seq_no"],
                                              "if_primary_term": d["_primary_term"]}})
                actions.append(new)
                sources[d["_id"]] = new
            pending = []
            for item in self._bulk(actions):
                if item.get("status") == 409:
                    pending.append(item["_id"])  # someone wrote it meanwhile: re-read and re-merge
                elif "error" in item:
                    raise RuntimeError(f"opensearch: writing asset {item['_id']}: {item['error']}")
                else:
                    written[item["_id"]] = sources[item["_id"]]
        if pending:
            raise RuntimeError(f"opensearch: {len(pending)} asset document(s) kept conflicting; retry the batch")
        return written

    @staticmethod
    def _snapshot(src: dict[str, Any]) -> dict[str, Any]:
        return {k: src.get(k) for k in FILTER_FIELDS if src.get(k) is not None}

    def _propagate(self, docs: dict[str, dict[str, Any]], skip: set[tuple[str, str, str]]) -> None:
        """Refresh the filter-field copies in every vector index that holds a vector of these assets."""
        actions: list[dict[str, Any]] = []
        for asset_id, src in docs.items():
            snap = self._snapshot(src)
            for model, by_version in (src.get("versions") or {}).items():
                for version, kfs in by_version.items():
                    if (asset_id, model, version) in skip or not any(e.get("embedding") for e in kfs.values()):
                        continue
                    actions += [{"update": {"_index": self.vec_index(model, version), "_id": asset_id}}, {"doc": snap}]
        for item in self._bulk(actions):
            if "error" in item and item.get("status") not in (404, 409):
                raise RuntimeError(f"opensearch: updating vector filter fields of {item['_id']}: {item['error']}")

    # ---- writes ------------------------------------------------------------------------------------
    def upsert_assets(self, tx: Conn, events: list[MediaUploaded]) -> int:
        by_id = {e.asset_id: e for e in events}

        def mutate(asset_id: str, src: dict[str, Any] | None) -> dict[str, Any] | None:
            e = by_id[asset_id]
            meta = {"asset_id": asset_id, "media_type": e.media_type, "content_type": e.content_type,
                    "filename": e.filename, "filename_text": filename_text(e.filename), "title": e.title,
                    "description": e.description, "source": e.source, "collection": e.collection,
                    "uploaded_at": e.occurred_at.isoformat()}
            meta = {k: v for k, v in meta.items() if v is not None}
            if src is not None and all(src.get(k) == v for k, v in meta.items()):
                return None  # a replay: nothing changes
            return {**(src or {}), **meta}

        written = self._rmw(list(by_id), mutate)
        self._propagate(written, set())
        return len(events)

    def apply_annotations(self, tx: Conn, events: list[Annotation]) -> int:
        if not events:
            return 0
        active = catalog.active_versions(tx, lock=True)  # a version switch waits for this batch
        for a in events:
            if a.model not in active:
                catalog.claim_first_version(tx, a.model, a.model_version)
                active[a.model] = a.model_version
        fields: dict[str, SearchFields] = {a.event_id: search_fields(a.payload) for a in events}
        by_asset: dict[str, list[Annotation]] = {}
        for a in events:
            by_asset.setdefault(a.asset_id, []).append(a)
        applied: dict[str, int] = {}

        def mutate(asset_id: str, src: dict[str, Any] | None) -> dict[str, Any] | None:
            doc = src or {"asset_id": asset_id}
            versions: merge.Versions = doc.get("versions") or {}
            n = sum(merge.add(versions, a, fields[a.event_id]) for a in by_asset[asset_id])
            applied[asset_id] = n
            if n == 0 and src is not None:
                return None
            s = merge.summarize(versions, active)
            doc.update(versions=versions, models=s.models, labels=s.labels, labels_text=" ".join(s.labels),
                       text_extra=s.text or None, numeric=s.numeric, model_keys=s.model_keys)
            return {k: v for k, v in doc.items() if v is not None}

        written = self._rmw(list(by_asset), mutate)
        # vectors: external version = produced_at, so replays and older events are refused (409)
        actions: list[dict[str, Any]] = []
        fresh: set[tuple[str, str, str]] = set()
        for a in events:
            f = fields[a.event_id]
            if f.embedding is None:
                continue
            index = self._ensure_vec_index(a.model, a.model_version, len(f.embedding),
                                           active.get(a.model) == a.model_version)
            src = written.get(a.asset_id) or {}
            actions += [
                {"index": {"_index": index, "_id": a.asset_id, "version": _micros(a.occurred_at),
                           "version_type": "external"}},
                {"embedding": f.embedding, "asset_id": a.asset_id, "annotation_id": a.annotation_id,
                 "keyframe_ms": a.keyframe_ms, "produced_at": a.occurred_at.isoformat(), **self._snapshot(src)},
            ]
            if a.asset_id in written:
                fresh.add((a.asset_id, a.model, a.model_version))
        for item in self._bulk(actions):
            if "error" in item and item.get("status") != 409:
                raise RuntimeError(f"opensearch: writing vector of {item['_id']}: {item['error']}")
        self._propagate(written, fresh)
        return sum(applied.get(i, 0) for i in written)

    # ---- queries ---------------------------------------------------------------------------------
    def _filter_clauses(self, q: SearchQuery) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        q.validate()
        must: list[dict[str, Any]] = []
        must_not: list[dict[str, Any]] = []
        for fld, val in (("media_type", q.media_type), ("source", q.source), ("collection", q.collection)):
            if val is not None:
                must.append({"term": {fld: val}})
        must += [{"term": {"labels": lb.lower()}} for lb in q.labels]
        if q.any_labels:
            must.append({"terms": {"labels": [lb.lower() for lb in q.any_labels]}})
        if q.exclude_labels:
            must_not.append({"terms": {"labels": [lb.lower() for lb in q.exclude_labels]}})
        rng: dict[str, str] = {}
        if q.uploaded_from is not None:
            rng["gte"] = q.uploaded_from.isoformat()
        if q.uploaded_to is not None:
            rng["lt"] = q.uploaded_to.isoformat()
        if rng:
            must.append({"range": {"uploaded_at": rng}})
        for r in q.numeric:
            bounds = {k: v for k, v in (("gte", r.gte), ("lte", r.lte)) if v is not None}
            must.append({"range": {f"numeric.{r.key}": bounds}} if bounds
                        else {"exists": {"field": f"numeric.{r.key}"}})
        for key, mode in q.flags:
            flagged = self._flagged(key)
            if mode == "exclude":
                must_not.append(flagged)
            elif mode == "only":
                must.append(flagged)
        ids: list[str] | None = None
        if q.project is not None:
            ids = catalog.project_asset_ids(self.settings, q.project)
        if q.asset_ids is not None:
            ids = [i for i in q.asset_ids if ids is None or i in set(ids)]
        if ids is not None:
            must.append({"ids": {"values": ids}})
        return must, must_not

    def _flagged(self, key: str) -> dict[str, Any]:
        """A flag is set by a score (numeric[key] >= threshold) or as a label (video summaries)."""
        t = self.settings.search.flag_threshold
        return {"bool": {"should": [{"range": {f"numeric.{key}": {"gte": t}}}, {"term": {"labels": key}}],
                         "minimum_should_match": 1}}

    def _query(self, q: SearchQuery) -> dict[str, Any]:
        must, must_not = self._filter_clauses(q)
        b: dict[str, Any] = {"filter": must}
        if must_not:
            b["must_not"] = must_not
        if q.has_text:
            assert q.text is not None
            b["must"] = [{"simple_query_string": {"query": websearch_to_simple(q.text), "fields": TEXT_FIELDS,
                                                   "default_operator": "and"}}]
        return {"bool": b}

    def _aggs(self, q: SearchQuery) -> dict[str, Any]:
        aggs: dict[str, Any] = {}
        shard_size = max(1000, q.facet_size * 20)  # exact counts unless a field has more distinct values
        for f in q.facets:
            if f in ("labels", "media_type", "source", "collection"):
                aggs[f] = {"terms": {"field": f, "size": max(q.facet_size, 1), "shard_size": shard_size,
                                     "order": [{"_count": "desc"}, {"_key": "asc"}]}}
            elif f == "flags":
                aggs[f] = {"filters": {"filters": {k: self._flagged(k) for k in FLAG_KEYS}}}
            elif f == "face_count":
                aggs[f] = {"range": {"field": "numeric.face_count", "keyed": True, "ranges": [
                    {"key": label, "from": lo, **({"to": hi + 1} if hi is not None else {})}
                    for label, lo, hi in FACE_BUCKETS]}}
        return aggs

    def search_body(self, q: SearchQuery) -> dict[str, Any]:
        if q.has_text and q.sort == "relevance":
            sort: list[Any] = ["_score", {"asset_id": "asc"}]
        else:
            order = "asc" if q.sort == "oldest" else "desc"
            sort = [{"uploaded_at": {"order": order, "missing": "_last"}}, {"asset_id": "asc"}]
        body: dict[str, Any] = {"query": self._query(q), "track_total_hits": True, "from": q.offset,
                                "size": q.limit, "sort": sort, "_source": DISPLAY, "aggs": self._aggs(q)}
        if q.has_text:
            body["highlight"] = {"pre_tags": ["<b>"], "post_tags": ["</b>"], "number_of_fragments": 2,
                                 "fields": {f: {} for f in HIGHLIGHT_FIELDS}}
        return body

    def search(self, q: SearchQuery) -> SearchResult:
        resp = self.client.search(index=self.assets_alias, body=self.search_body(q))
        hits = []
        for h in resp["hits"]["hits"]:
            hl = h.get("highlight") or {}
            frags = [frag for f in HIGHLIGHT_FIELDS for frag in hl.get(f, [])]
            hits.append(self._hit(h["_source"], float(h.get("_score") or 0.0), " ... ".join(frags) or None))
        facets: dict[str, dict[str, int]] = {}
        aggs = resp.get("aggregations", {})
        for f in q.facets:
            a = aggs.get(f, {})
            if f == "flags":
                facets[f] = {k: int(v["doc_count"]) for k, v in a.get("buckets", {}).items()}
            elif f == "face_count":
                buckets = a.get("buckets", {})
                items = buckets.items() if isinstance(buckets, dict) else ((b["key"], b) for b in buckets)
                facets[f] = {k: int(v["doc_count"]) for k, v in items}
            else:
                facets[f] = {str(b["key"]): int(b["doc_count"]) for b in a.get("buckets", [])}
        return SearchResult(total=int(resp["hits"]["total"]["value"]), hits=hits, facets=facets)

    @staticmethod
    def _hit(src: dict[str, Any], score: float, highlight: str | None = None) -> Hit:
        up = src.get("uploaded_at")
        return Hit(src.get("asset_id", ""), score, src.get("filename"), src.get("title"), src.get("media_type"),
                   list(src.get("labels") or []), highlight, datetime.fromisoformat(up) if up else None)

    def knn(self, model: str, vector: Sequence[float], k: int = 10, query: SearchQuery | None = None,
            exclude: str | None = None) -> list[Hit]:
        q = (query or SearchQuery()).filters_only()
        must, must_not = self._filter_clauses(q)
        if exclude:
            must_not.append({"ids": {"values": [exclude]}})
        filt = {"bool": {"filter": must, "must_not": must_not}} if (must or must_not) else None
        body = knn_query_body(vector, k, filt, self.cfg.ef_search)
        try:
            resp = self.client.search(index=self.vec_alias(model), body=body)
        except NotFoundError:
            raise LookupError(f"no {model} embeddings are indexed (yet)") from None
        cands = [(h["_id"], cosine_from_score(float(h["_score"]))) for h in resp["hits"]["hits"]]
        return self._recheck(cands, q)

    def _recheck(self, cands: list[tuple[str, float]], q: SearchQuery) -> list[Hit]:
        if not cands:
            return []
        must, must_not = self._filter_clauses(q)
        body = {"size": len(cands), "_source": DISPLAY,
                "query": {"bool": {"filter": [*must, {"ids": {"values": [c for c, _ in cands]}}],
                                   "must_not": must_not}}}
        src = {h["_id"]: h["_source"] for h in self.client.search(index=self.assets_alias, body=body)["hits"]["hits"]}
        hits = [self._hit(src[a], s) for a, s in cands if a in src]
        return sorted(hits, key=lambda h: (-h.score, h.asset_id))

    def vector_of(self, asset_id: str, model: str) -> list[float] | None:
        try:
            doc = self.client.get(index=self.vec_alias(model), id=asset_id, _source_includes=["embedding"])
        except NotFoundError:
            return None
        return [float(x) for x in doc["_source"]["embedding"]]

    def iter_asset_ids(self, query: SearchQuery, batch: int = 1000) -> Iterator[str]:
        for h in helpers.scan(self.client, index=self.assets_alias, query={"query": self._query(query)},
                              size=batch, _source=False, scroll="2m"):
            yield h["_id"]

    # ---- versions ----------------------------------------------------------------------------------
    def vector_models(self) -> list[VectorModel]:
        from core import db

        with db.connect(self.settings) as conn:
            active = catalog.active_versions(conn)
        try:
            aliases = self.client.indices.get_alias(index=f"{self.prefix}vec-*")
        except NotFoundError:
            return []
        out: dict[str, VectorModel] = {}
        mappings = self.client.indices.get_mapping(index=f"{self.prefix}vec-*")
        for index in sorted(aliases):
            mapping = mappings[index]["mappings"]
            model, version = mapping["_meta"]["model"], mapping["_meta"]["version"]
            vm = out.setdefault(model, VectorModel(model, active.get(model), {}, None))
            vm.versions[version] = int(self.client.count(index=index)["count"])
            if active.get(model) == version:
                vm.dim = int(mapping["properties"]["embedding"]["dimension"])
        return list(out.values())

    def activate_version(self, model: str, version: str) -> Activation:
        from core import db

        c = self.client
        index = self.vec_index(model, version)
        n = c.count(index=self.assets_alias, body={"query": {"term": {"model_keys": f"{model}@{version}"}}})["count"]
        if n == 0:
            raise LookupError(f"no document holds {model} version {version}; nothing to switch to")
        with db.transaction(self.settings) as conn:
            previous = catalog.set_active_version(conn, model, version)
        if c.indices.exists(index=index):  # labels-only models have no vector index
            alias = self.vec_alias(model)
            actions: list[dict[str, Any]] = []
            if c.indices.exists_alias(name=alias):
                actions += [{"remove": {"index": i, "alias": alias}} for i in c.indices.get_alias(name=alias)]
            actions.append({"add": {"index": index, "alias": alias}})
            c.indices.update_aliases(body={"actions": actions})  # atomic: queries see old or new, never none
        with db.connect(self.settings) as conn:
            active = catalog.active_versions(conn)
        ids = [h["_id"] for h in helpers.scan(c, index=self.assets_alias, _source=False,
                                               query={"query": {"term": {"model_keys": model}}})]
        updated = 0
        for i in range(0, len(ids), 500):
            def mutate(asset_id: str, src: dict[str, Any] | None) -> dict[str, Any] | None:
                if src is None:
                    return None
                s = merge.summarize(src.get("versions") or {}, active)
                if (src.get("models") or {}).get(model, {}).get("version") == s.models.get(model, {}).get("version"):
                    return None
                src.update(models=s.models, labels=s.labels, labels_text=" ".join(s.labels),
                           text_extra=s.text or None, numeric=s.numeric, model_keys=s.model_keys)
                return {k: v for k, v in src.items() if v is not None}

            written = self._rmw(ids[i:i + 500], mutate)
            self._propagate(written, set())
            updated += len(written)
        return Activation(model, version, previous, updated)

    def rebuild_assets_index(self) -> tuple[str, str]:
        """Copy the assets index into a fresh one (current template/mappings) and swap the alias.

        Documents written during the copy are caught up after the swap by merging the old document
        into the new one with the convergent merge rule, so no write is lost. Returns (old, new)."""
        c = self.client
        old = next(iter(c.indices.get_alias(name=self.assets_alias)))
        new = self.assets_index(int(old.rsplit("-", 1)[1]) + 1)
        c.indices.create(index=new)
        started = _now()
        batch: list[dict[str, Any]] = []
        for h in helpers.scan(c, index=old, query={"query": {"match_all": {}}}, size=500, scroll="5m"):
            batch += [{"create": {"_index": new, "_id": h["_id"]}}, h["_source"]]
            if len(batch) >= 1000:
                self._bulk(batch)
                batch = []
        self._bulk(batch)
        c.indices.update_aliases(body={"actions": [
            {"remove": {"index": old, "alias": self.assets_alias}},
            {"add": {"index": new, "alias": self.assets_alias, "is_write_index": True}}]})
        c.indices.refresh(index=old)
        late = {h["_id"]: h["_source"] for h in helpers.scan(
            c, index=old, query={"query": {"range": {"updated_at": {"gte": started}}}})}
        if late:
            with_active = self._active()

            def mutate(asset_id: str, src: dict[str, Any] | None) -> dict[str, Any] | None:
                o = late[asset_id]
                versions = merge.merge_versions(o.get("versions") or {}, (src or {}).get("versions") or {})
                s = merge.summarize(versions, with_active)
                doc = {**o, **(src or {})}
                doc.update(versions=versions, models=s.models, labels=s.labels, labels_text=" ".join(s.labels),
                           text_extra=s.text or None, numeric=s.numeric, model_keys=s.model_keys)
                return {k: v for k, v in doc.items() if v is not None}

            self._rmw(list(late), mutate)
        c.indices.delete(index=old)
        return old, new

    def _active(self) -> dict[str, str]:
        from core import db

        with db.connect(self.settings) as conn:
            return catalog.active_versions(conn)

    # ---- misc -----------------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.client.indices.refresh(index=f"{self.prefix}*")

    def count(self) -> int:
        return int(self.client.count(index=self.assets_alias,
                                     body={"query": {"exists": {"field": "model_keys"}}})["count"])

    def get(self, asset_id: str) -> dict[str, Any] | None:
        try:
            src = self.client.get(index=self.assets_alias, id=asset_id)["_source"]
        except NotFoundError:
            return None
        src.pop("versions", None)
        return src  # type: ignore[no-any-return]
