"""Search-index backends behind one interface (see interface.py)."""

from __future__ import annotations

from core.settings import Settings
from sinks.search.interface import SearchIndex

BACKENDS = ("postgres", "opensearch")


def get_search_index(settings: Settings) -> SearchIndex:
    if settings.search_backend == "postgres":
        from sinks.search.postgres_backend import PostgresSearchIndex

        return PostgresSearchIndex(settings)
    if settings.search_backend == "opensearch":
        from sinks.search.opensearch_backend import OpenSearchSearchIndex

        return OpenSearchSearchIndex(settings)
    raise ValueError(f"unknown search backend {settings.search_backend!r} (available: {', '.join(BACKENDS)})")
