"""Per model: images/s through the whole pipeline vs the same model in-process, in the same run.

    .venv/bin/python -m benchmarks.model_pipeline [--models efficientnet_lite0 coco_centernet ...] [--n 64]

One private embedded stack (temp state dir, free ports). The same ``--n`` distinct JPEGs (~640 px, cut
from the real sample photos) are used on both sides:

  in-process: the model's processor handler decodes and prepares each JPEG (``handler.prepare``, the
              code the processor runs) and the model runs in this process (``benchmarks.models.in_process``:
              onnxruntime or the python-backend ``Core``), in batches of the processor's batch size.
              Reported with and without the decode/prepare step.
  pipeline:   the uploads are queued first (S3 + PostgreSQL + outbox), then the relay, this model's
              processor and the sinks run: Kafka -> fetch from S3 -> decode -> Triton -> annotation topic
              -> PostgreSQL + search. Steady rate = annotations applied per second from the first to
              the last annotation produced (excludes process start-up).

Models run one after another on the same uploads (a new consumer group per model reads the upload topic
from the start), so each has the 2 cores to itself apart from the sinks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from argus import pipeline
from argus.stack.manager import running_stack
from argus.stack.ports import settings_for_tests
from argus.workers import Supervisor, Worker
from benchmarks.models import _stack, in_process
from benchmarks.pipeline import make_images
from core import db, kafka
from core.settings import Settings
from models import registry
from models.registry import get_model, unavailable_models
from producers.ingest import Ingestor, Metadata
from schemas.events import MediaUploaded

MEDIA_MODELS = [m for m, cls in registry.model_classes(Settings()).items() if "image" in cls.media_types]


def _event(i: int, data: bytes) -> MediaUploaded:
    return MediaUploaded(event_id=f"bench-{i}", asset_id=f"bench-{i}", bucket="bench", object_key=f"b{i}.jpg",
                         media_type="image", content_type="image/jpeg", size_bytes=len(data), filename=f"b{i}.jpg")


def in_process_rates(model: str, images: list[bytes], settings: Settings, batch: int) -> tuple[float, float]:
    """(items/s model only, items/s decode + prepare + model) with the processor's own prepare step."""
    handler = get_model(settings, model)
    infer = (in_process(model, settings) if model in registry.triton_models(settings)
             else lambda b: handler.infer(None, b))  # type: ignore[arg-type]  # algorithmic (pdq): no Triton

    def prepare(chunk: list[bytes], base: int) -> list[dict[str, np.ndarray]]:
        return [it.row for i, b in enumerate(chunk) for it in handler.prepare(_event(base + i, b), b)]

    rows = prepare(images, 0)
    infer(_stack(rows[:batch]))  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        infer(_stack(rows[i : i + batch]))
    model_only = len(rows) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        infer(_stack(prepare(images[i : i + batch], i)))
    return model_only, len(images) / (time.perf_counter() - t0)


def steady_rate(settings: Settings, ids: list[str], model: str) -> float:
    """Annotations/s after the first batch: (n - first batch) / (last applied - first batch produced). The
    first batch's own work happened before its timestamp, so its items are not counted."""
    with db.connect(settings) as conn:
        r = conn.execute(
            """WITH a AS (SELECT produced_at, applied_at FROM annotations WHERE model = %s AND asset_id = ANY(%s)),
                    f AS (SELECT min(produced_at) AS t0 FROM a)
               SELECT count(*) FILTER (WHERE produced_at > f.t0 + interval '50 milliseconds') AS n,
                      extract(epoch FROM max(applied_at) - f.t0) AS s
               FROM a, f GROUP BY f.t0""", (model, ids)).fetchone()
    return int(r["n"]) / float(r["s"]) if r and r["s"] and r["n"] else float("nan")


def run(models: list[str], n: int, console: Console) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="argus-bench-mp-") as tmp:
        settings = settings_for_tests(Path(tmp) / "state")
        settings.models = list(models)
        images = make_images(n, Path(tmp) / "samples")
        with running_stack(settings, console=console):
            db.migrate(settings)
            kafka.ensure_topics(settings, kafka.all_topics(settings, list(models)))
            ing = Ingestor(settings)
            ids = [ing.ingest_bytes(b, Metadata(filename=f"b{i}.jpg")).asset_id for i, b in enumerate(images)]
            sinks = [Worker("relay", ["run", "relay"]), Worker("sink-postgres", ["run", "sink", "postgres"]),
                     Worker("sink-search", ["run", "sink", "search"])]
            for model in models:
                batch = min(get_model(settings, model).max_batch, settings.processor.batch_size)
                console.print(f"[bold]{model}[/bold]: in-process, {n} images, batch {batch}")
                model_only, with_prepare = in_process_rates(model, images, settings, batch)
                console.print(f"[bold]{model}[/bold]: pipeline, {n} queued uploads")
                sup = Supervisor(settings, [*sinks, Worker(f"processor-{model}", ["run", "processor", model])])
                t0 = time.perf_counter()
                sup.start()
                try:
                    final = pipeline.wait_until_done(settings, ids, model, timeout=1800, poll_s=0.2)
                    wall = time.perf_counter() - t0
                    assert final.done and final.failed == 0, f"{model}: {final}; dead workers: {sup.dead()}"
                finally:
                    sup.stop()
                steady = steady_rate(settings, ids, model)
                results[model] = {"n": n, "batch": batch, "in_process_model_per_s": round(model_only, 2),
                                  "in_process_with_decode_per_s": round(with_prepare, 2),
                                  "pipeline_steady_per_s": round(steady, 2), "pipeline_wall_s": round(wall, 1),
                                  "ratio_pipeline_vs_model": round(steady / model_only, 3),
                                  "ratio_pipeline_vs_model_with_decode": round(steady / with_prepare, 3)}
                console.print(results[model])
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=None, help="default: every available image model")
    ap.add_argument("--n", type=int, default=64, help="distinct JPEGs per model (several batches each)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    console = Console()
    models = args.models or MEDIA_MODELS
    skip = unavailable_models(Settings(), models)
    for m, why in skip.items():
        console.print(f"[yellow]skip {m}[/yellow]: {why}")
    results = run([m for m in models if m not in skip], args.n, console)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table("model", "in-process model/s", "in-process decode+model/s", "pipeline steady/s",
                  "pipeline / model", "pipeline / decode+model",
                  title=f"{platform.machine()}, {os.cpu_count()} cores, no GPU; n={args.n}; load avg {load}")
    for m, r in results.items():
        table.add_row(m, f"{r['in_process_model_per_s']:.1f}", f"{r['in_process_with_decode_per_s']:.1f}",
                      f"{r['pipeline_steady_per_s']:.1f}", f"{r['ratio_pipeline_vs_model']:.2f}",
                      f"{r['ratio_pipeline_vs_model_with_decode']:.2f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
