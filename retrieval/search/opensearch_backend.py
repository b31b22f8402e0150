"""OpenSearch search, the read side: full text, facets and k-NN over the indices that
``sinks.search.opensearch_backend`` writes (the writer this class extends; its module docstring
describes the layout: the ``assets`` alias, one ``vec-<model>-<version>`` k-NN index per model version
behind the ``vec-<model>`` alias of the active one).

kNN results are re-checked against the assets index with the full filter (the copies of the filter
fields in a vector index may lag a concurrent update) and take their display fields from there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from opensearchpy import helpers
from opensearchpy.exceptions import NotFoundError

from core import db
from retrieval.people import queries as people_queries
from retrieval.search import projects
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
from sinks import lifecycle
from sinks.search import catalog
from sinks.search.opensearch_backend import OpenSearchSearchWriter

TEXT_FIELDS = ["title^4", "labels_text^4", "meta_text^4", "description^2", "text_extra^2", "filename_text"]
HIGHLIGHT_FIELDS = ("title", "meta_text", "labels_text", "description", "text_extra", "filename_text")
DISPLAY = ["asset_id", "filename", "title", "media_type", "labels", "uploaded_at"]


def websearch_to_simple(text: str) -> str:
    """Web-search syntax (shared with PostgreSQL's websearch_to_tsquery) -> simple_query_string:
    words AND-ed, "phrases" and -exclusions kept, the word ``or`` becomes ``|``."""
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


class OpenSearchSearchIndex(OpenSearchSearchWriter, SearchIndex):
    """The writer plus the queries: what the API, the CLI and the benchmarks use."""

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
            ids = projects.project_asset_ids(self.settings, q.project)
        if q.asset_ids is not None:
            ids = [i for i in q.asset_ids if ids is None or i in set(ids)]
        if q.persons or q.any_persons:  # the people tables live in PostgreSQL (docs/people.md)
            with_persons = set(people_queries.asset_ids_with_persons(self.settings, q.persons, q.any_persons))
            ids = sorted(with_persons if ids is None else with_persons & set(ids))
        if ids is not None:
            must.append({"ids": {"values": ids}})
        if not q.include_hidden:  # killed/deleted leftovers and embargoed assets: the state is in PostgreSQL
            hidden = lifecycle.hidden_asset_ids(self.settings)
            if hidden:
                must_not.append({"ids": {"values": hidden}})
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
                if f == "labels":  # "credit:afp" counts as a credit (its own facet), not as a label
                    aggs[f]["terms"]["exclude"] = "(" + "|".join(PHOTO_FACETS) + "):.*"
            elif f in PHOTO_FACETS:  # prefixed labels ("credit:afp"), counted without the prefix
                aggs[f] = {"terms": {"field": "labels", "include": re.escape(f) + ":.*",
                                     "size": max(q.facet_size, 1), "shard_size": shard_size,
                                     "order": [{"_count": "desc"}, {"_key": "asc"}]}}
            elif f == "flags":
                aggs[f] = {"filters": {"filters": {k: self._flagged(k) for k in FLAG_KEYS}}}
            elif f == "persons":  # persons live in PostgreSQL; OpenSearch documents do not hold them
                raise QueryError("the persons facet needs the postgres search backend (docs/people.md)")
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
            elif f in PHOTO_FACETS:
                facets[f] = {str(b["key"])[len(f) + 1:]: int(b["doc_count"]) for b in a.get("buckets", [])
                             if str(b["key"]).startswith(f + ":")}
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

    # ---- misc -----------------------------------------------------------------------------------------
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
