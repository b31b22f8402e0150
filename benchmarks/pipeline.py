"""End-to-end ingest throughput vs the raw model, measured in the same run on the same machine.

    .venv/bin/python -m benchmarks.pipeline [--n 200] [--batch 16]

Starts a private embedded stack (temp state dir, free ports), then measures:
  1. raw model: EfficientNet-Lite0 in-process (onnxruntime, same model.onnx as Triton), batches of
     ``--batch`` pre-decoded 224x224 inputs -> images/s (the baseline);
  2. the same plus JPEG decode + resize in-process (what a processor must also do);
  3. ingest: N uploads through the ingest path (sha256, S3, asset + outbox transaction) -> uploads/s;
  4. pipeline drain: with the N uploads already queued, start relay + processor + sinks and time
     until every asset is annotated AND searchable -> assets/s, and per-asset latency
     (publish -> searchable) percentiles;
  5. end to end: uploads while the workers run, first upload -> last asset searchable -> assets/s.
Prints a table and the ratios pipeline / raw model.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from argus import pipeline
from argus.samples import export_samples
from argus.stack.manager import EmbeddedStack, running_stack
from argus.stack.ports import settings_for_tests
from argus.workers import Supervisor, default_workers
from core import db, kafka
from core.imaging import load_image, to_model_input
from core.settings import Settings
from models.inprocess import InProcessModel
from producers.ingest import Ingestor, Metadata

MODEL = "efficientnet_lite0"


def make_images(n: int, folder: Path) -> list[bytes]:
    """n distinct JPEGs (~640 px) cut from the real sample photos."""
    photos = [Image.open(p).convert("RGB") for p in export_samples(folder)]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        k = i // len(photos)
        w, h = img.size
        crop = img.crop((k % 37, k % 23, w - (k % 11), h - (k % 13))).resize((640, int(640 * h / w)))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=88)
        out.append(buf.getvalue())
    return out


def raw_model(images: list[bytes], batch: int, settings: Settings) -> tuple[float, float]:
    model = InProcessModel(MODEL, repo=settings.triton_repo)
    inputs = [to_model_input(load_image(b, settings.limits.max_image_pixels)) for b in images]
    model.infer(np.stack(inputs[:batch]))  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(inputs), batch):
        model.infer(np.stack(inputs[i : i + batch]))
    model_only = len(inputs) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        rows = [to_model_input(load_image(b, settings.limits.max_image_pixels)) for b in images[i : i + batch]]
        model.infer(np.stack(rows))
    with_decode = len(images) / (time.perf_counter() - t0)
    return model_only, with_decode


def latencies(settings: Settings, ids: list[str]) -> list[float]:
    """Seconds from the outbox row's creation to the search doc holding the annotation."""
    with db.connect(settings) as conn:
        rows = conn.execute(
            """SELECT extract(epoch FROM d.updated_at - o.created_at) AS s
               FROM search_docs d JOIN outbox o ON o.key = d.asset_id
               WHERE d.asset_id = ANY(%s) AND d.models ? %s""",
            (ids, MODEL),
        ).fetchall()
    return sorted(float(r["s"]) for r in rows)


def steady_throughput(settings: Settings, ids: list[str]) -> float:
    """Assets/s from the first event published to the last asset searchable (excludes the
    relay's process start, which the wall-clock drain includes)."""
    with db.connect(settings) as conn:
        r = conn.execute(
            """SELECT extract(epoch FROM (SELECT max(updated_at) FROM search_docs WHERE asset_id = ANY(%s))
                                        - (SELECT min(published_at) FROM outbox WHERE key = ANY(%s))) AS s""",
            (ids, ids),
        ).fetchone()
    return len(ids) / float(r["s"])


def cpu_seconds(stack: EmbeddedStack, sup: Supervisor) -> dict[str, float]:
    """CPU seconds (user + system, children included) used so far by each server and worker."""
    import psutil

    pids = {s.name: s.pid for s in stack.status()} | sup.pids()
    out = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
            out[name] = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        except (psutil.Error, TypeError):
            continue
    return out


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def run(n: int, batch: int, console: Console, instances: int = 1) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="argus-bench-") as tmp:
        settings = settings_for_tests(Path(tmp) / "state")
        settings.processor.batch_size = batch
        settings.processor.instances = instances
        # the comparison is about ONE model: run only its processor (the default set has five)
        settings.models = [MODEL]
        images = make_images(2 * n, Path(tmp) / "samples")
        console.print(f"[bold]raw model[/bold]: {n} images, batch {batch}")
        model_only, with_decode = raw_model(images[:n], batch, settings)

        with running_stack(settings, console=console) as stack:
            db.migrate(settings)
            kafka.ensure_topics(settings, kafka.all_topics(settings, settings.models))
            ing = Ingestor(settings)

            sup = Supervisor(settings, default_workers(settings))
            sup.start()
            # warm-up: one asset end to end, so every consumer has joined its group and Triton is warm
            warm = ing.ingest_bytes(images[-1], Metadata(filename="warmup.jpg")).asset_id
            assert pipeline.wait_until_done(settings, [warm], MODEL, timeout=300).done

            console.print(f"[bold]ingest[/bold]: {n} uploads (relay stopped, so they queue in the outbox)")
            sup.stop("relay")
            t0 = time.perf_counter()
            ids = [ing.ingest_bytes(b, Metadata(filename=f"b{i}.jpg")).asset_id for i, b in enumerate(images[:n])]
            ingest_rate = n / (time.perf_counter() - t0)

            console.print("[bold]drain[/bold]: relay started; processor + sinks work off the backlog")
            cpu0 = cpu_seconds(stack, sup)
            t0 = time.perf_counter()
            sup.start("relay")
            final = pipeline.wait_until_done(settings, ids, MODEL, timeout=1800, poll_s=0.1)
            drain_s = time.perf_counter() - t0
            cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu_seconds(stack, sup).items()}
            assert final.done and final.failed == 0, final
            drain_rate = n / drain_s
            steady_rate = steady_throughput(settings, ids)
            logs = {p.name: p.read_text()[-3000:] for p in (settings.abs_state_dir / "logs").glob("processor*.log")}

            console.print(f"[bold]end to end[/bold]: {n} more uploads while the workers run")
            t0 = time.perf_counter()
            ids2 = [ing.ingest_bytes(b, Metadata(filename=f"e{i}.jpg")).asset_id
                    for i, b in enumerate(images[n:])]
            final = pipeline.wait_until_done(settings, ids2, MODEL, timeout=1800, poll_s=0.1)
            e2e_s = time.perf_counter() - t0
            assert final.done and final.failed == 0, final
            lat = latencies(settings, ids2)
            sup.stop()
            for name, text in logs.items():
                print(name, "".join(ln for ln in text.splitlines(True) if "per stage" in ln)[-400:])
    return {
        "n": n,
        "batch": batch,
        "raw_model_img_s": model_only,
        "raw_model_with_decode_img_s": with_decode,
        "ingest_uploads_s": ingest_rate,
        "drain_assets_s": drain_rate,
        "drain_s": drain_s,
        "steady_assets_s": steady_rate,
        "ratio_steady_vs_model": steady_rate / model_only,
        **{f"drain_cpu_s_{k}": v for k, v in sorted(cpu.items())},
        "e2e_assets_s": n / e2e_s,
        "e2e_latency_p50_s": pct(lat, 50),
        "e2e_latency_p95_s": pct(lat, 95),
        "e2e_latency_p99_s": pct(lat, 99),
        "ratio_drain_vs_model": drain_rate / model_only,
        "ratio_drain_vs_model_with_decode": drain_rate / with_decode,
        "ratio_e2e_vs_model": (n / e2e_s) / model_only,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--instances", type=int, default=1, help="processor processes per model")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    console = Console()
    r = run(args.n, args.batch, console, args.instances)
    table = Table(title=f"Argus pipeline vs raw model (n={args.n}, batch={args.batch})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in r.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
