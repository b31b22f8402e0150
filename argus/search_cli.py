"""CLI commands for search and retrieval: ``argus search``, ``argus reindex``, ``argus projects``."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core.settings import get_settings

console = Console()
projects_app = typer.Typer(help="Projects (collections of assets) that search can be restricted to.",
                           no_args_is_help=True)


def search(
    text: Annotated[str | None, typer.Argument(help='words, "a phrase", -not, or')] = None,
    label: Annotated[list[str] | None, typer.Option(help="require this label (repeatable)")] = None,
    any_label: Annotated[list[str] | None, typer.Option(help="at least one of these labels")] = None,
    not_label: Annotated[list[str] | None, typer.Option(help="none of these labels")] = None,
    media_type: Annotated[str | None, typer.Option(help="image | video")] = None,
    source: Annotated[str | None, typer.Option()] = None,
    collection: Annotated[str | None, typer.Option()] = None,
    project: Annotated[str | None, typer.Option(help="project id")] = None,
    since: Annotated[datetime | None, typer.Option(help="uploaded at or after")] = None,
    until: Annotated[datetime | None, typer.Option(help="uploaded before")] = None,
    faces_min: Annotated[int | None, typer.Option(help="at least this many faces")] = None,
    faces_max: Annotated[int | None, typer.Option(help="at most this many faces")] = None,
    nsfw: Annotated[str, typer.Option(help="include | exclude | only")] = "include",
    sort: Annotated[str, typer.Option(help="relevance | newest | oldest")] = "relevance",
    similar_to: Annotated[str | None, typer.Option(help="asset id: more like this")] = None,
    image: Annotated[Path | None, typer.Option(help="a picture: more like this (embedded through Triton)")] = None,
    box: Annotated[str | None, typer.Option(help="region of --image or --similar-to: x1,y1,x2,y2 (0..1)")] = None,
    semantic: Annotated[bool, typer.Option(help="meaning, not words (MiniLM text embedding)")] = False,
    hybrid: Annotated[bool, typer.Option(help="words + meaning, reciprocal rank fusion")] = False,
    model: Annotated[str | None, typer.Option(help="embedding model for kNN")] = None,
    limit: int = 10,
    offset: int = 0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Search the archive by words, labels and facets, or by example (asset, picture, region)."""
    from api.render import print_hits, print_search
    from retrieval.query_embed import EmbedUnavailable, QueryEmbedder, Region
    from retrieval.search import get_search_index
    from retrieval.search.interface import NumericRange, QueryError, SearchQuery

    settings = get_settings()
    index = get_search_index(settings)
    flags = (("nsfw", nsfw),) if nsfw != "include" else ()
    numeric = (NumericRange("face_count", faces_min, faces_max),) if faces_min is not None or faces_max is not None \
        else ()
    q = SearchQuery(text=text, labels=tuple(label or ()), any_labels=tuple(any_label or ()),
                    exclude_labels=tuple(not_label or ()), media_type=media_type, source=source,
                    collection=collection, project=project, uploaded_from=since, uploaded_to=until,
                    numeric=numeric, flags=flags, sort=sort, limit=limit, offset=offset)  # type: ignore[arg-type]
    embedder = QueryEmbedder(settings)
    try:
        region = Region.parse(box) if box else None
        if image is not None or (similar_to and region is not None):
            m = model or settings.search.query_embed_model
            if image is not None:
                data = image.read_bytes()
            else:
                from core import db
                from core.storage import ObjectStore

                with db.connect(settings) as conn:
                    row = conn.execute("SELECT object_key, bucket FROM assets WHERE asset_id=%s",
                                       (similar_to,)).fetchone()
                if row is None:
                    raise LookupError(f"no asset {similar_to}")
                data = ObjectStore(settings).get(row["object_key"], bucket=row["bucket"])
            hits = index.knn(m, embedder.image(m, data, region), limit, q)
            title = f"more like {image or similar_to}" + (f" region {box}" if box else "")
            result = None
        elif similar_to:
            m = model or settings.search.query_embed_model
            hits, title, result = index.similar(similar_to, m, limit, q), f"more like {similar_to[:12]}", None
        elif semantic:
            if not text:
                raise QueryError("--semantic needs a text")
            m = model or settings.search.text_embed_model
            hits, title, result = index.knn(m, embedder.text(text, m), limit, q), f'meaning of "{text}"', None
        elif hybrid:
            if not text:
                raise QueryError("--hybrid needs a text")
            m = model or settings.search.text_embed_model
            result = index.hybrid(q, m, embedder.text(text, m))
            hits, title = result.hits, ""
        else:
            result = index.search(q)
            hits, title = result.hits, ""
    except (QueryError, LookupError, EmbedUnavailable, KeyError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    finally:
        embedder.close()
    if as_json:
        out = {"total": result.total if result else len(hits), "hits": [asdict(h) for h in hits],
               "facets": result.facets if result else {}}
        print(json.dumps(out, default=str, indent=2))
    elif result is not None:
        print_search(console, text or "", result, offset)
    else:
        print_hits(console, title, hits)


def reindex(
    model: Annotated[str, typer.Option(help="the model to re-run")],
    version: Annotated[str | None, typer.Option(help="target version (default: what the processors stamp)")] = None,
    asset: Annotated[list[str] | None, typer.Option(help="only these asset ids (repeatable)")] = None,
    label: Annotated[list[str] | None, typer.Option(help="only assets with this label")] = None,
    media_type: Annotated[str | None, typer.Option(help="only image | video assets")] = None,
    all_assets: Annotated[bool, typer.Option("--all", help="also assets that already have the version")] = False,
    wait: Annotated[bool, typer.Option(help="wait for the backfill, then switch search to the version")] = True,
    activate_only: Annotated[bool, typer.Option(help="only switch search to --version (no backfill)")] = False,
    timeout: float = 3600.0,
) -> None:
    """Re-run MODEL on all or some assets (outbox -> media.backfill.<model>, exactly-once) and switch
    search to the new version once every asset has it (no downtime)."""
    from argus import reindex as rx
    from retrieval.search.interface import SearchQuery

    settings = get_settings()
    if activate_only:
        if not version:
            raise typer.BadParameter("--activate-only needs --version")
        act = rx.activate(settings, model, version)
        console.print(f"{model}: active version {act.version} (was {act.previous}); {act.docs_updated} docs updated")
        return
    query = SearchQuery(labels=tuple(label or ()), media_type=media_type) if label or media_type else None
    try:
        run = rx.start(settings, model, version, asset_ids=asset, query=query, missing_only=not all_assets)
    except KeyError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"run {run.run_id}: {len(run.asset_ids)} asset(s) re-published for {model} {run.version}")
    if not wait or not run.asset_ids:
        if run.asset_ids:
            console.print(f"switch later with: argus reindex --model {model} --version {run.version} --activate-only")
        return
    from rich.progress import Progress

    with Progress(console=console) as bar:
        task = bar.add_task(f"{model} {run.version}", total=len(run.asset_ids))
        p = rx.wait(settings, run, timeout, lambda p: bar.update(task, completed=p.done + p.failed))
    if not p.finished:
        console.print(f"[red]timed out[/red]: {p.done} done, {p.failed} failed of {p.total}; search unchanged")
        raise typer.Exit(1)
    act = rx.activate(settings, model, run.version, run.run_id)
    console.print(f"{p.done} annotated, {p.failed} failed; search now uses {model} {act.version} "
                  f"(was {act.previous}); {act.docs_updated} docs updated")


@projects_app.command("create")
def projects_create(name: str, description: Annotated[str | None, typer.Option()] = None) -> None:
    from retrieval.search import projects

    p = projects.create_project(get_settings(), name, description)
    console.print(f"{p.project_id}  {p.name}")


@projects_app.command("list")
def projects_list() -> None:
    from rich.table import Table

    from retrieval.search import projects

    table = Table("project", "name", "assets", "created")
    for p in projects.list_projects(get_settings()):
        table.add_row(p.project_id, p.name, str(p.assets), str(p.created_at)[:19])
    console.print(table)


@projects_app.command("add")
def projects_add(project_id: str, asset_ids: list[str]) -> None:
    from retrieval.search import projects

    console.print(f"{project_id}: {projects.add_assets(get_settings(), project_id, asset_ids)} asset(s)")


@projects_app.command("remove")
def projects_remove(project_id: str, asset_id: str) -> None:
    from retrieval.search import projects

    projects.remove_asset(get_settings(), project_id, asset_id)


@projects_app.command("delete")
def projects_delete(project_id: str) -> None:
    from retrieval.search import projects

    projects.delete_project(get_settings(), project_id)


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    app.command("reindex")(reindex)
    app.add_typer(projects_app, name="projects")
