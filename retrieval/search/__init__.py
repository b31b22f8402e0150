"""Search, the read side: full-text queries, facets, kNN, hybrid ranking, projects, version listing.

``get_search_index(settings)`` returns the configured backend's whole index: the writer of
sinks/search/ (what the search sink writes, version activation) extended with the queries of
interface.py. The sink itself uses ``sinks.search.get_search_writer``.
"""

from __future__ import annotations

from core.settings import Settings
from retrieval.search.interface import SearchIndex
from retrieval.search.opensearch_backend import OpenSearchSearchIndex
from retrieval.search.postgres_backend import PostgresSearchIndex
from sinks.search import BACKENDS

__all__ = ["BACKENDS", "get_search_index"]


def get_search_index(settings: Settings) -> SearchIndex:
    if settings.search_backend == "postgres":
        return PostgresSearchIndex(settings)
    if settings.search_backend == "opensearch":
        return OpenSearchSearchIndex(settings)
    raise ValueError(f"unknown search backend {settings.search_backend!r} (available: {', '.join(BACKENDS)})")
