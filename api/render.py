"""Readable terminal output for search results (CLI and demo)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from sinks.search.interface import Hit, SearchResult


def print_hits(console: Console, title: str, hits: list[Hit]) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("#", "score", "asset", "file", "labels"):
        table.add_column(col)
    for i, h in enumerate(hits, 1):
        table.add_row(str(i), f"{h.score:.3f}", h.asset_id[:12], h.filename or "", ", ".join(h.labels[:4]))
    console.print(table)


def print_search(console: Console, text: str, result: SearchResult) -> None:
    print_hits(console, f'search "{text}": {result.total} hit(s)', result.hits)
    for name, counts in result.facets.items():
        if counts:
            shown = ", ".join(f"{k} ({v})" for k, v in list(counts.items())[:8])
            console.print(f"  [dim]facet {name}:[/dim] {shown}")
