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

This is the WRITE side (the search sink, version activation, index rebuilds); the queries are
``retrieval.search.opensearch_backend.OpenSearchSearchIndex``, which extends this class.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch, helpers

from core import db
from core.db import Conn
from core.settings import Settings
from schemas.events import Annotation, MediaUploaded, SearchFields
from sinks.search import catalog, merge
from sinks.search.interface import Activation, SearchIndexWriter

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
    return re.sub(r"[._\-]+", " ", name or "").strip()


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
                    "title": EN, "description": EN, "labels_text": EN, "text_extra": EN, "meta_text": EN,
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


class OpenSearchSearchWriter(SearchIndexWriter):
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
        """The index template and the first assets index (idempotent). Called by the search sink at its
        start; the PostgreSQL catalog tables are SQL migrations (core/migrations/)."""
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
    def remove_assets(self, tx: Conn, asset_ids: list[str]) -> int:
        """A kill or delete: the asset documents and every vector index's copies go (404s are fine: idempotent)."""
        actions: list[dict[str, Any]] = []
        got = self.client.mget(index=self.assets_alias, body={"ids": asset_ids})["docs"]
        for d in got:
            if not d.get("found"):
                continue
            for model, by_version in (d["_source"].get("versions") or {}).items():
                for version in by_version:
                    actions.append({"delete": {"_index": self.vec_index(model, version), "_id": d["_id"]}})
            actions.append({"delete": {"_index": self.assets_alias, "_id": d["_id"]}})
        removed = 0
        for item in self._bulk(actions):
            if "error" in item and item.get("status") != 404:
                raise RuntimeError(f"opensearch: removing {item['_id']}: {item['error']}")
            removed += item.get("result") == "deleted"
        return removed

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
        fields: dict[str, SearchFields] = {a.event_id: a.payload.search_fields() for a in events}
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
                       text_extra=s.text or None, meta_text=s.title_text or None, numeric=s.numeric,
                           model_keys=s.model_keys)
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

    # ---- versions ----------------------------------------------------------------------------------
    def activate_version(self, model: str, version: str) -> Activation:
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
                           text_extra=s.text or None, meta_text=s.title_text or None, numeric=s.numeric,
                           model_keys=s.model_keys)
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
                           text_extra=s.text or None, meta_text=s.title_text or None, numeric=s.numeric,
                           model_keys=s.model_keys)
                return {k: v for k, v in doc.items() if v is not None}

            self._rmw(list(late), mutate)
        c.indices.delete(index=old)
        return old, new

    def _active(self) -> dict[str, str]:
        with db.connect(self.settings) as conn:
            return catalog.active_versions(conn)

    # ---- misc -----------------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.client.indices.refresh(index=f"{self.prefix}*")
