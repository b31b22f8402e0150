"""The main job: embedded stack up -> sample photos in -> annotated + indexed -> example searches."""

from __future__ import annotations

import signal
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.render import print_hits, print_search
from argus import pipeline
from argus.samples import export_samples
from argus.service import Service, service_workers
from argus.stack.manager import EmbeddedStack
from core import db, kafka
from core.settings import Settings
from models.registry import enabled_models, unavailable_models
from models.store import pull_all
from producers.bulk_import import bulk_import
from producers.ingest import Ingestor
from retrieval.search import get_search_index
from retrieval.search.interface import SearchQuery

MODEL = "efficientnet_lite0"


def run_demo(settings: Settings, keep_serving: bool = True, timeout: float = 600.0) -> int:
    console = Console()
    console.rule("[bold]Argus: embedded stack")
    stack = EmbeddedStack(settings)
    enabled = enabled_models(settings)
    unavailable = unavailable_models(settings, enabled)
    for name, why in unavailable.items():
        console.print(f"[yellow]{name}[/yellow] not started: {why}")
    active = [m for m in enabled if m not in unavailable]
    pull_all(settings)
    stack.up()
    db.migrate(settings)
    kafka.ensure_topics(settings, kafka.all_topics(settings, enabled))

    # the same supervised service as `argus serve`: a crashed worker is restarted, a crash-looping one is marked
    # degraded and the rest keep running (argus/service.py)
    svc = Service(settings, service_workers(settings, api=keep_serving))
    svc.run_in_thread()
    sup = svc.sup
    signal.signal(signal.SIGTERM, lambda *_: svc.stop_event.set())
    console.print(f"workers: {', '.join(f'{n} (pid {p})' for n, p in sup.pids().items())}; "
                  f"logs in {settings.abs_state_dir / 'logs'}")
    try:
        console.rule("[bold]Ingest the sample photos (scikit-image, scikit-learn)")
        files = export_samples(settings.abs_state_dir / "samples")
        report = bulk_import(Ingestor(settings), files, source="samples")
        ids = [a for _, a in report.created + report.duplicates]
        console.print(f"{len(report.created)} new, {len(report.duplicates)} already in the archive, "
                      f"{len(report.rejected)} rejected")

        console.rule("[bold]Annotate (Triton) and index")
        t0 = time.monotonic()
        cols = (TextColumn("[bold]annotated + indexed"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*cols) as bar:
            task = bar.add_task("wait", total=len(ids))

            def show(p: pipeline.Progress) -> None:
                bar.update(task, completed=p.finished)
                if why := svc.state.degraded().get(f"processor-{MODEL}"):
                    raise RuntimeError(f"processor-{MODEL} is degraded: {why}")

            final = pipeline.wait_until_done(settings, ids, MODEL, timeout, show)
        if not final.done:
            console.print(f"[red]timed out after {timeout:.0f}s: {final}")
            return 1
        console.print(f"{final.annotated} annotated, {final.indexed} indexed, {final.failed} failed "
                      f"in {time.monotonic() - t0:.1f}s")

        console.rule("[bold]Searches")
        index = get_search_index(settings)
        for text in ("cat", "coffee", "motorcycle OR moped"):
            print_search(console, text, index.search(SearchQuery(text=text, limit=5)))
        by_name = {p.stem: a for p, a in report.created + report.duplicates}
        if "astronaut" in by_name:
            print_hits(console, "more like astronaut.jpg (EfficientNet-Lite0 embedding, kNN)",
                       index.similar(by_name["astronaut"], MODEL, 5))
        paths = {p.stem: p for p, _ in report.created + report.duplicates}
        if "chelsea" in paths:
            from retrieval.query_embed import QueryEmbedder, Region

            box = Region(0.25, 0.05, 0.75, 0.65)  # the cat's head
            vec = QueryEmbedder(settings).image(MODEL, paths["chelsea"].read_bytes(), box)
            print_hits(console, "region search: a box on chelsea.jpg (the cat's head), embedded now through Triton",
                       index.knn(MODEL, vec, 5))
        if "face_mtcnn" in active:
            pipeline.wait_until_done(settings, ids, "face_mtcnn", 300)
            print_search(console, "label:face (MTCNN)", index.search(SearchQuery(labels=("face",), limit=5)))
        if "coco_centernet" in active:
            pipeline.wait_until_done(settings, ids, "coco_centernet", 300)
            print_search(console, "label:cup (COCO objects, CenterNet)",
                         index.search(SearchQuery(labels=("cup",), limit=5)))
        if "nsfw_nudenet" in active:
            pipeline.wait_until_done(settings, ids, "nsfw_nudenet", 300)
            flagged = index.search(SearchQuery(flags=(("nsfw", "only"),), limit=5)).total
            print_search(console, f"person, nsfw=exclude (NudeNet; {flagged} sample(s) flagged)",
                         index.search(SearchQuery(text="person", flags=(("nsfw", "exclude"),), limit=5)))
        if "text_embed" in active:
            from retrieval.semantic import semantic_search

            pipeline.wait_until_done(settings, ids, "text_embed", 300)
            print_hits(console, "semantic: 'a pet animal' (MiniLM text embedding, kNN)",
                       semantic_search(settings, "a pet animal", 5))
        if keep_serving:
            console.rule("[bold]API")
            base = f"http://127.0.0.1:{settings.ports.api}"
            console.print(f"[bold]Web app: {base}/[/bold]  (search and asset pages; log in with an API key to upload "
                          f"and keep projects: docs/ui.md)")
            console.print(f"API: {base}/v1/search?q=cat  (OpenAPI: {base}/docs). "
                          f"Ctrl-C stops the workers and the stack.")
            console.print("Serving under the supervisor (crashed workers are restarted; `argus status` shows "
                          "each worker's state, restarts and lag).")
            svc.stop_event.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        svc.shutdown()
        stack.down()
