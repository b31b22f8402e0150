"""On-demand annotation latency over gRPC per model vs the pipeline's, measured in the same run.

    .venv/bin/python -m benchmarks.grpc_latency [--n 20] [--models efficientnet_lite0,face_mtcnn,pdq]

Starts a private embedded stack (temp state dir, free ports) with ``--models``, then:
  1. gRPC: the `argus run grpc` worker (its own process, as under `argus serve`); for each model, ``--n`` distinct
     photos (~640 px JPEG) one after another, one ``Annotate`` call per photo with that model only -> client-side
     wall time per call (bytes in, payload out); also all models in one call;
  2. the pipeline (the baseline): relay + every model's processor + the sinks, idle and warm; the same photos
     uploaded one at a time (ingest: S3 + outbox), each waited for until every model's annotation row is in
     PostgreSQL -> per model, seconds from the upload call to its row (polled every 20 ms).
Prints p50/p95 per model and the ratio pipeline p50 / gRPC p50.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from api.proto import annotate_pb2, annotate_pb2_grpc
from argus.stack.manager import running_stack
from argus.stack.ports import settings_for_tests
from argus.workers import Supervisor, Worker, default_workers
from benchmarks.pipeline import make_images, pct
from core import db, kafka
from core.settings import Settings
from producers.ingest import Ingestor, Metadata

KEY = "dev-key"


def grpc_latencies(settings: Settings, images: list[bytes], models: list[str]) -> dict[str, list[float]]:
    channel = grpc.insecure_channel(f"127.0.0.1:{settings.ports.grpc}")
    grpc.channel_ready_future(channel).result(timeout=60)
    stub = annotate_pb2_grpc.AnnotatorStub(channel)
    md = (("x-api-key", KEY),)
    for m in models:  # warm-up: the first call opens Triton connections, loads lazy state
        stub.Annotate(annotate_pb2.AnnotateRequest(content=images[-1], models=[m]), metadata=md, timeout=120)
    out: dict[str, list[float]] = {}
    for key, names in [*((m, [m]) for m in models), ("all models, one call", models)]:
        xs = []
        for img in images:
            t0 = time.perf_counter()
            stub.Annotate(annotate_pb2.AnnotateRequest(content=img, models=names), metadata=md, timeout=120)
            xs.append(time.perf_counter() - t0)
        out[key] = sorted(xs)
    channel.close()
    return out


def pipeline_latencies(settings: Settings, images: list[bytes], models: list[str]) -> dict[str, list[float]]:
    ing = Ingestor(settings)
    out: dict[str, list[float]] = {m: [] for m in models}
    out["all models"] = []
    with db.connect(settings) as conn:
        for i, img in enumerate(images):
            t0 = time.perf_counter()
            aid = ing.ingest_bytes(img, Metadata(filename=f"p{i}.jpg")).asset_id
            seen: dict[str, float] = {}
            deadline = t0 + 300
            while len(seen) < len(models) and time.perf_counter() < deadline:
                rows = conn.execute("SELECT DISTINCT model FROM annotations WHERE asset_id=%s AND model = ANY(%s)",
                                    (aid, models)).fetchall()
                now = time.perf_counter() - t0
                for r in rows:
                    seen.setdefault(r["model"], now)
                conn.commit()
                time.sleep(0.02)
            assert len(seen) == len(models), f"asset {i}: only {sorted(seen)} after 300 s"
            for m, s in seen.items():
                out[m].append(s)
            out["all models"].append(max(seen.values()))
    return {k: sorted(v) for k, v in out.items()}


def run(n: int, models: list[str], console: Console) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="argus-bench-") as tmp:
        settings = settings_for_tests(Path(tmp) / "state")
        settings.models = list(models)
        images = make_images(n + 2, Path(tmp) / "samples")
        with running_stack(settings, console=console):
            db.migrate(settings)
            kafka.ensure_topics(settings, kafka.all_topics(settings, settings.models))
            sup = Supervisor(settings, [*default_workers(settings), Worker("grpc", ["run", "grpc"])])
            sup.start()
            try:
                console.print(f"[bold]gRPC[/bold]: {n} photos x {len(models)} models, one call at a time")
                g = grpc_latencies(settings, images[:n], models)
                console.print(f"[bold]pipeline[/bold]: warm-up, then {n} uploads one at a time")
                pipeline_latencies(settings, images[n:n + 2], models)  # warm-up: consumers joined, Triton warm
                p = pipeline_latencies(settings, images[:n], models)
            finally:
                sup.stop()
    rows: dict[str, dict[str, float]] = {}
    for m in models:
        rows[m] = {"grpc_p50_ms": pct(g[m], 50) * 1000, "grpc_p95_ms": pct(g[m], 95) * 1000,
                   "pipeline_p50_ms": pct(p[m], 50) * 1000, "pipeline_p95_ms": pct(p[m], 95) * 1000}
    allg, allp = g["all models, one call"], p["all models"]
    rows["all models"] = {"grpc_p50_ms": pct(allg, 50) * 1000, "grpc_p95_ms": pct(allg, 95) * 1000,
                          "pipeline_p50_ms": pct(allp, 50) * 1000, "pipeline_p95_ms": pct(allp, 95) * 1000}
    for r in rows.values():
        r["ratio_pipeline_vs_grpc_p50"] = r["pipeline_p50_ms"] / r["grpc_p50_ms"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--models", default="efficientnet_lite0,face_mtcnn,pdq")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    console = Console()
    rows = run(args.n, args.models.split(","), console)
    table = Table(title=f"on-demand gRPC vs pipeline latency, {args.n} photos per model (ms)")
    for col in ("model", "gRPC p50", "gRPC p95", "pipeline p50", "pipeline p95", "pipeline/gRPC (p50)"):
        table.add_column(col)
    for m, r in rows.items():
        table.add_row(m, f"{r['grpc_p50_ms']:.0f}", f"{r['grpc_p95_ms']:.0f}", f"{r['pipeline_p50_ms']:.0f}",
                      f"{r['pipeline_p95_ms']:.0f}", f"{r['ratio_pipeline_vs_grpc_p50']:.1f}x")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
