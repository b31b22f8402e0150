"""The search read interface: queries, hits, facets, kNN and hybrid ranking.

``SearchIndex`` is the whole index as the API and the CLI see it: the write side
(``sinks.search.interface.SearchIndexWriter``: what the search sink calls, plus version activation)
and the queries declared here. PostgreSQL implements it in the embedded default; OpenSearch
implements the same contract for scale-out (aliases, bulk, knn_vector).

Queries (``SearchQuery``) mean the same on every backend; ``tests/test_search_backends.py`` runs one
suite against both. Full-text syntax is web-search style: words (all must match), "a phrase",
-excluded, ``or``.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from schemas.events import META_FACETS
from sinks.search.interface import SearchIndexWriter

FACET_FIELDS = ("labels", "media_type", "source", "collection")
EXTRA_FACETS = ("flags", "face_count")  # counts of flagged docs per flag; face-count buckets
# a photo's metadata record (schemas/events.py MediaMetadata): byline, credit, IPTC source, country, city, date
# taken by month and day; counted from the prefixed labels ("credit:afp"), facet values without the prefix
# the spoken language of videos and audio files ("language:en", schemas/events.py Transcript), counted the same way
SPEECH_FACETS = ("language",)
PHOTO_FACETS = META_FACETS + SPEECH_FACETS
PEOPLE_FACETS = ("persons",)  # assets per person (person id -> count; asked for explicitly: docs/people.md)
FLAG_KEYS = ("nsfw", "disturbing")  # numeric fields that are flags (set when >= flag_threshold)
# face-count facet buckets: (label, gte, lte)
FACE_BUCKETS: tuple[tuple[str, float, float | None], ...] = (
    ("0", 0, 0), ("1", 1, 1), ("2-5", 2, 5), ("6+", 6, None))
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009)

_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
Sort = Literal["relevance", "newest", "oldest"]
FlagMode = Literal["include", "exclude", "only"]


class QueryError(ValueError):
    """A query that cannot be answered as asked (the API answers 400 with the message)."""


@dataclass(frozen=True)
class NumericRange:
    """``numeric[key]`` within [gte, lte]; a document without the key never matches."""

    key: str
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    media_type: str | None = None
    labels: tuple[str, ...] = ()  # every label must be present
    any_labels: tuple[str, ...] = ()  # at least one of them
    exclude_labels: tuple[str, ...] = ()
    source: str | None = None
    collection: str | None = None
    uploaded_from: datetime | None = None
    uploaded_to: datetime | None = None  # exclusive
    numeric: tuple[NumericRange, ...] = ()  # e.g. NumericRange("face_count", gte=1)
    flags: tuple[tuple[str, FlagMode], ...] = ()  # e.g. (("nsfw", "exclude"),)
    project: str | None = None  # restrict to a project's assets
    asset_ids: tuple[str, ...] | None = None  # restrict to these assets (internal use)
    persons: tuple[str, ...] = ()  # person ids or names: every one must be in the asset (AND)
    any_persons: tuple[str, ...] = ()  # at least one of them (OR)
    include_hidden: bool = False  # admins: also killed assets' leftovers and embargoed assets (docs/metadata.md)
    sort: Sort = "relevance"  # relevance falls back to newest without text
    limit: int = 20
    offset: int = 0
    facets: tuple[str, ...] = FACET_FIELDS
    facet_size: int = 20

    @property
    def has_text(self) -> bool:
        return bool(self.text and self.text.strip())

    @property
    def has_filters(self) -> bool:
        return any((self.media_type, self.labels, self.any_labels, self.exclude_labels, self.source,
                    self.collection, self.uploaded_from, self.uploaded_to, self.numeric,
                    [f for f in self.flags if f[1] != "include"], self.project, self.asset_ids is not None,
                    self.persons, self.any_persons))

    def filters_only(self) -> SearchQuery:
        return replace(self, text=None)

    def validate(self) -> SearchQuery:
        for r in self.numeric:
            if not _KEY_RE.match(r.key):
                raise QueryError(f"invalid numeric field name {r.key!r}")
            if r.gte is not None and r.lte is not None and r.gte > r.lte:
                raise QueryError(f"numeric range for {r.key}: min {r.gte} > max {r.lte}")
        for key, mode in self.flags:
            if not _KEY_RE.match(key):
                raise QueryError(f"invalid flag name {key!r}")
            if mode not in ("include", "exclude", "only"):
                raise QueryError(f"flag {key}: mode must be include, exclude or only (got {mode!r})")
        known = FACET_FIELDS + EXTRA_FACETS + PHOTO_FACETS + PEOPLE_FACETS
        unknown = [f for f in self.facets if f not in known]
        if unknown:
            raise QueryError(f"unknown facet(s) {unknown}; available: {', '.join(known)}")
        if any(not p.strip() for p in self.persons + self.any_persons):
            raise QueryError("a person filter needs a person id or name")
        if self.uploaded_from and self.uploaded_to and self.uploaded_from >= self.uploaded_to:
            raise QueryError("uploaded_from must be before uploaded_to")
        if self.limit < 0 or self.offset < 0:
            raise QueryError("limit and offset must not be negative")
        return self


@dataclass
class Hit:
    asset_id: str
    score: float
    filename: str | None = None
    title: str | None = None
    media_type: str | None = None
    labels: list[str] = field(default_factory=list)
    highlight: str | None = None
    uploaded_at: datetime | None = None


@dataclass
class SearchResult:
    total: int
    hits: list[Hit]
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class VectorModel:
    model: str
    active_version: str | None
    versions: dict[str, int]  # version -> vectors stored
    dim: int | None = None


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank). Ties by asset id
    (stable pagination)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, asset_id in enumerate(ranking, 1):
            scores[asset_id] = scores.get(asset_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


class SearchIndex(SearchIndexWriter):
    """The full index: the writer's methods (sinks/search/interface.py) and the queries."""

    # ---- reads --------------------------------------------------------------------------------
    @abstractmethod
    def search(self, query: SearchQuery) -> SearchResult: ...

    @abstractmethod
    def knn(self, model: str, vector: Sequence[float], k: int = 10, query: SearchQuery | None = None,
            exclude: str | None = None) -> list[Hit]:
        """Nearest neighbours of ``vector`` among ``model``'s ACTIVE-version vectors, restricted by the
        filters of ``query`` (its text is ignored), cosine similarity as score."""

    @abstractmethod
    def vector_of(self, asset_id: str, model: str) -> list[float] | None:
        """The asset's stored ``model`` embedding of the active version (None when absent)."""

    def similar(self, asset_id: str, model: str, k: int = 10, query: SearchQuery | None = None) -> list[Hit]:
        """kNN on the asset's embedding from ``model`` (its active version)."""
        vec = self.vector_of(asset_id, model)
        if vec is None:
            raise LookupError(f"asset {asset_id} has no {model} embedding (yet)")
        return self.knn(model, vec, k, query, exclude=asset_id)

    def hybrid(self, query: SearchQuery, model: str, vector: Sequence[float], depth: int = 100) -> SearchResult:
        """Full text and kNN fused with reciprocal rank fusion; both legs honour the filters.
        Facets are those of the text leg's filters (exact); total = fused candidates."""
        depth = max(depth, query.offset + query.limit)
        text_res = self.search(replace(query, limit=depth, offset=0, sort="relevance")) if query.has_text \
            else SearchResult(0, [], {})
        vec_hits = self.knn(model, vector, depth, query)
        fused = rrf([[h.asset_id for h in text_res.hits], [h.asset_id for h in vec_hits]])
        by_id = {h.asset_id: h for h in vec_hits} | {h.asset_id: h for h in text_res.hits}
        page = fused[query.offset: query.offset + query.limit]
        hits = [replace(by_id[a], score=s) for a, s in page]
        facets = text_res.facets if query.has_text else self.search(replace(query, limit=0)).facets
        return SearchResult(total=len(fused), hits=hits, facets=facets)

    @abstractmethod
    def iter_asset_ids(self, query: SearchQuery, batch: int = 1000) -> Iterator[str]:
        """Every asset id matching the query's filters and text, unranked (scroll / cursor)."""

    # ---- model versions (activate_version is the writer's: it rewrites documents) ----------
    @abstractmethod
    def vector_models(self) -> list[VectorModel]: ...

    # ---- misc -----------------------------------------------------------------------------------
    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def get(self, asset_id: str) -> dict[str, Any] | None: ...
