"""The search-index WRITE interface: what the search sink calls, and version activation.

PostgreSQL implements it in the embedded default; OpenSearch implements the same contract for
scale-out (aliases, bulk, knn_vector). The queries over the index are the read side's
(``retrieval.search.interface.SearchIndex`` extends this class with them).

Writes go through ``tx``, the sink's open PostgreSQL transaction that also stores its offsets:
the PostgreSQL backend writes inside it (one atomic commit), a remote engine writes idempotently
(deterministic ``_id`` = asset id, newest-wins per model) before it commits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from core.db import Conn
from schemas.events import Annotation, MediaUploaded


@dataclass
class Activation:
    model: str
    version: str
    previous: str | None
    docs_updated: int


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


class SearchIndexWriter(ABC):
    # ---- writes (the search sink) ----------------------------------------------------------
    @abstractmethod
    def ensure_schema(self) -> None: ...

    @abstractmethod
    def upsert_assets(self, tx: Conn, events: list[MediaUploaded]) -> int: ...

    @abstractmethod
    def apply_annotations(self, tx: Conn, events: list[Annotation]) -> int: ...

    def remove_assets(self, tx: Conn, asset_ids: list[str]) -> int:
        """Remove the assets' documents and vectors (a kill or delete, docs/metadata.md); idempotent. The
        PostgreSQL engine's rows are purged by sinks/lifecycle.py in the same transaction already."""
        return 0

    # ---- model versions -------------------------------------------------------------------
    @abstractmethod
    def activate_version(self, model: str, version: str) -> Activation:
        """Make ``version`` the one queries use for ``model`` (vectors and labels), without downtime;
        the documents are re-derived with the new rule."""
