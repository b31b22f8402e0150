"""`argus ndd`: reverse (near-duplicate) search and duplicate groups from the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from core.settings import get_settings

app = typer.Typer(help="Near-duplicate detection: reverse image/video search, duplicate groups.",
                  no_args_is_help=True)
console = Console()


@app.command("search")
def search(
    file: Annotated[Path | None, typer.Argument(help="an image or video file to look for")] = None,
    asset: Annotated[str | None, typer.Option(help="an archived asset's id instead of a file")] = None,
    mode: Annotated[str, typer.Option(help="exact | near | similar")] = "near",
    threshold: Annotated[int | None, typer.Option(help="max PDQ Hamming distance (default: calibrated)")] = None,
    limit: int = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Where else does this picture / footage appear in the archive?"""
    from retrieval.ndd.service import match_to_dict, shared_service

    if (file is None) == (asset is None):
        raise typer.BadParameter("give either FILE or --asset ID")
    settings = get_settings()
    if mode == "similar":
        if asset is None:
            raise typer.BadParameter("mode similar from the CLI takes --asset (or use the API with a file)")
        from retrieval.search import get_search_index

        hits = get_search_index(settings).similar(asset, settings.search.query_embed_model, limit)
        rows: list[dict[str, Any]] = [{"asset_id": h.asset_id, "relation": "similar", "score": round(h.score, 4)}
                                      for h in hits]
    else:
        svc = shared_service(settings)
        q = svc.hash_upload(file.read_bytes()) if file is not None else svc.query_of_asset(asset or "")
        rows = [match_to_dict(m) for m in svc.search(q, mode, threshold, exclude=asset)[:limit]]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"{mode} matches of {file or asset}", title_justify="left")
    for col in ("#", "relation", "path", "evidence", "asset", "type", "where"):
        table.add_column(col)
    for i, r in enumerate(rows, 1):
        where = ""
        if "video" in r:
            where = "; ".join(f"q {x['query_start_ms'] / 1000:.0f}-{x['query_end_ms'] / 1000:.0f}s = "
                              f"ref {x['ref_start_ms'] / 1000:.0f}-{x['ref_end_ms'] / 1000:.0f}s"
                              for x in r["video"]["ranges"])
        elif "frame_ms" in r:
            where = f"at {r['frame_ms'] / 1000:.1f}s of the video"
        elif "region" in r and r.get("path") != "hash":
            where = f"query {r['region']['query_box']} = ref {r['region']['ref_box']}"
        ev = r.get("evidence", {})
        evidence = f"{ev['inliers']} inliers" if "inliers" in ev else str(r.get("distance", r.get("score")))
        table.add_row(str(i), r["relation"], str(r.get("path", "")), evidence, r["asset_id"][:12],
                      str(r.get("media_type", "")), where)
    console.print(table)


@app.command("groups")
def groups(
    threshold: Annotated[int | None, typer.Option(help="max PDQ Hamming distance")] = None,
    min_size: int = 2,
    limit: int = 50,
) -> None:
    """Duplicate groups of the archive (connected components of near-duplicate pairs)."""
    from retrieval.ndd.service import shared_service

    gs = shared_service(get_settings()).groups(threshold, min_size)
    console.print(f"{len(gs)} duplicate group(s)")
    for i, g in enumerate(gs[:limit], 1):
        console.print(f"  {i:>3}. {len(g)} assets: {', '.join(a[:12] for a in g)}")


@app.command("status")
def status() -> None:
    """The NDD index: hashes loaded, checkpoint, thresholds."""
    from retrieval.ndd.service import shared_service

    console.print_json(json.dumps(shared_service(get_settings()).status()))
