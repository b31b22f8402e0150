"""Readable terminal output for search results (CLI and demo)."""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from retrieval.search.interface import Hit, SearchResult

_B = re.compile(r"</?b>")


def _highlight(text: str) -> str:
    """ts_headline / OpenSearch <b>..</b> fragments -> rich bold markup (everything else escaped)."""
    parts = _B.split(text)
    tags = _B.findall(text)
    out = escape(parts[0])
    for tag, part in zip(tags, parts[1:], strict=True):
        out += ("[bold yellow]" if tag == "<b>" else "[/bold yellow]") + escape(part)
    return out.replace("\n", " ")


def print_hits(console: Console, title: str, hits: list[Hit], offset: int = 0) -> None:
    table = Table(title=title, title_justify="left")
    show_hl = any(h.highlight for h in hits)
    for col in ("#", "score", "asset", "type", "file", "labels") + (("match",) if show_hl else ()):
        table.add_column(col, overflow="fold")
    for i, h in enumerate(hits, offset + 1):
        row = [str(i), f"{h.score:.3f}", h.asset_id[:12], h.media_type or "", escape(h.filename or ""),
               escape(", ".join(h.labels[:4]) + (" ..." if len(h.labels) > 4 else ""))]
        if show_hl:
            row.append(_highlight(h.highlight or ""))
        table.add_row(*row)
    console.print(table)


def print_search(console: Console, text: str, result: SearchResult, offset: int = 0) -> None:
    shown = f"{offset + 1}-{offset + len(result.hits)} of " if result.hits else ""
    print_hits(console, f'search "{text}": {shown}{result.total} hit(s)', result.hits, offset)
    for name, counts in result.facets.items():
        if counts and any(counts.values()):
            listed = ", ".join(f"{escape(k)} ({v})" for k, v in list(counts.items())[:8])
            console.print(f"  [dim]facet {name}:[/dim] {listed}")
