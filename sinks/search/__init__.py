"""The search index's WRITE side: what the search sink writes, behind one interface (interface.py).

The queries (the read side) are retrieval/search/, whose ``get_search_index`` returns the whole
index (these writers extended with the queries).
"""

from __future__ import annotations

from core.settings import Settings
from sinks.search.interface import SearchIndexWriter
from sinks.search.opensearch_backend import OpenSearchSearchWriter
from sinks.search.postgres_backend import PostgresSearchWriter

BACKENDS = ("postgres", "opensearch")


def get_search_writer(settings: Settings) -> SearchIndexWriter:
    """The configured backend's writer (the search sink's; queries use retrieval.search.get_search_index)."""
    if settings.search_backend == "postgres":
        return PostgresSearchWriter(settings)
    if settings.search_backend == "opensearch":
        return OpenSearchSearchWriter(settings)
    raise ValueError(f"unknown search backend {settings.search_backend!r} (available: {', '.join(BACKENDS)})")
