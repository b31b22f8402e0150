"""The search-index interface. PostgreSQL implements it in the embedded default; OpenSearch
implements the same contract for scale-out (aliases, bulk, knn_vector).

Writes go through ``tx``, the sink's open PostgreSQL transaction that also stores its offsets:
the PostgreSQL backend writes inside it (one atomic commit), a remote engine writes idempotently
(deterministic ``_id`` = asset id, newest-wins per model) before it commits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from argus.db import Conn
from schemas.events import Annotation, MediaUploaded

FACET_FIELDS = ("labels", "media_type", "source", "collection")


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    media_type: str | None = None
    labels: tuple[str, ...] = ()  # every label must be present
    source: str | None = None
    collection: str | None = None
    uploaded_from: datetime | None = None
    uploaded_to: datetime | None = None
    limit: int = 20
    offset: int = 0
    facets: tuple[str, ...] = FACET_FIELDS
    facet_size: int = 20


@dataclass
class Hit:
    asset_id: str
    score: float
    filename: str | None = None
    title: str | None = None
    media_type: str | None = None
    labels: list[str] = field(default_factory=list)
    highlight: str | None = None


@dataclass
class SearchResult:
    total: int
    hits: list[Hit]
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


def is_newer(current: dict[str, Any] | None, incoming: dict[str, Any]) -> bool:
    """Newest-wins merge rule per model: later ``produced_at`` wins, ties broken by annotation id.
    A replay or an out-of-order older event therefore never overwrites newer data, and applying
    any permutation of the same events gives the same document."""
    if current is None:
        return True
    return (incoming["produced_at"], incoming["annotation_id"]) > (
        current["produced_at"],
        current["annotation_id"],
    )


class SearchIndex(ABC):
    @abstractmethod
    def ensure_schema(self) -> None: ...

    @abstractmethod
    def upsert_assets(self, tx: Conn, events: list[MediaUploaded]) -> int: ...

    @abstractmethod
    def apply_annotations(self, tx: Conn, events: list[Annotation]) -> int: ...

    @abstractmethod
    def search(self, query: SearchQuery) -> SearchResult: ...

    @abstractmethod
    def similar(self, asset_id: str, model: str, k: int = 10) -> list[Hit]:
        """kNN on the asset's embedding from ``model`` (its active version)."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def get(self, asset_id: str) -> dict[str, Any] | None: ...
