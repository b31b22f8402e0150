"""The whole default suite on newsroom-sized photos, through the API, against its in-process bound (same run).

    .venv/bin/python -m benchmarks.suite [--n 12] [--sizes 1 12 24] [--no-compare] [--json out.json]

Starts a private embedded stack with every default model that is available here, the workers and the API, then:
  1. the bound: each model's cost per item on inputs it has already prepared (no decode, no queue): Triton models
     through ``Model.infer`` on a prepared batch, in-process stages (pdq, renditions) on a decoded 1 MP photo,
     MiniLM on the assets' texts; bound = 1 / sum of the per-model seconds per asset;
  2. for each size class (1, 12, 24 megapixels; JPEG q90 made from the sample photos): N uploads through
     ``POST /v1/assets`` while the workers run; assets/s from the first upload to the last model state, and the
     per-asset time from upload to its last model state (p50/p95);
  3. ``--compare`` (default): the largest class again with full-resolution decoding
     (``processor.scaled_decode = false``: the decoder before issue 15) on fresh copies.
Prints one table with the ratios; the figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from api.web_routes import expected_models
from argus.samples import export_samples
from argus.stack.manager import running_stack
from argus.stack.ports import settings_for_tests
from argus.workers import Supervisor, default_workers
from core import db, kafka
from core.settings import Settings
from core.triton import TritonClient
from models.registry import default_models, get_model, unavailable_models
from models.text_embed import TextEmbed
from schemas.events import MediaUploaded

SIZES = {1: (1224, 816), 12: (4240, 2832), 24: (6000, 4000)}


def photos(n: int, mp: int, folder: Path, salt: int) -> list[bytes]:
    """n distinct photo-like JPEGs of ``mp`` megapixels: sample photos scaled up with a little grain (a pure
    upscale compresses far better than a real photo; the grain brings the size near a camera's, ~3.5 MB at 24 MP)."""
    srcs = [Image.open(p).convert("RGB") for p in export_samples(folder)]
    rng = np.random.default_rng(mp * 1000 + salt)
    size = SIZES[mp]
    out = []
    for i in range(n):
        img = srcs[i % len(srcs)].resize(size, Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-5, 6, (size[1], size[0], 3), dtype=np.int16)
        buf = io.BytesIO()
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def bound(settings: Settings, models: list[str], sample: bytes) -> dict[str, float]:
    """Seconds per asset of each model on prepared input (see the module doc)."""
    event = MediaUploaded(event_id="bench", asset_id="0" * 64, bucket="b", object_key="k", media_type="image",
                          content_type="image/jpeg", size_bytes=len(sample), filename="bench.jpg")
    triton = TritonClient(settings)
    costs: dict[str, float] = {}
    try:
        for name in models:
            model = get_model(settings, name)
            if model.consumes == "annotations":
                texts = [f"person, face, harbour, boat, crane {i}" for i in range(32)]
                assert isinstance(model, TextEmbed)
                model.embed(texts[:4], triton)
                t0 = time.perf_counter()
                model.embed(texts, triton)
                costs[name] = (time.perf_counter() - t0) / len(texts)
                continue
            if name == "renditions":  # its work is the encoding in prepare (on a 1 MP photo)
                t0 = time.perf_counter()
                for _ in range(3):
                    model.prepare(event, sample)
                costs[name] = (time.perf_counter() - t0) / 3
                continue
            rows = model.prepare(event, sample)
            batch = {k: np.stack([it.row[k] for it in rows * 4]) for k in rows[0].row}
            model.infer(triton, batch)  # warm-up
            t0 = time.perf_counter()
            for _ in range(3):
                model.infer(triton, batch)
            costs[name] = (time.perf_counter() - t0) / (3 * 4 * len(rows)) * len(rows)
    finally:
        triton.close()
    return costs


def last_states(settings: Settings, ids: list[str]) -> list[float]:
    """Per asset: seconds from its upload to its last model state."""
    with db.connect(settings) as conn:
        rows = conn.execute(
            """SELECT extract(epoch FROM max(s.updated_at) - a.uploaded_at) AS s
               FROM assets a JOIN asset_model_status s USING (asset_id)
               WHERE a.asset_id = ANY(%s) GROUP BY a.asset_id, a.uploaded_at""",
            (ids,)).fetchall()
    return sorted(float(r["s"]) for r in rows)


def wait_all(settings: Settings, ids: list[str], models: list[str], timeout: float) -> float:
    """Until every asset has a state from each of ``models`` (the models that report on photos)."""
    deadline = time.monotonic() + timeout
    want = len(ids) * len(models)
    while time.monotonic() < deadline:
        with db.connect(settings) as conn:
            n = db.scalar(conn, "SELECT count(*) FROM asset_model_status WHERE asset_id = ANY(%s) AND model = ANY(%s)",
                          (ids, models))
        if n >= want:
            return time.monotonic()
        time.sleep(0.2)
    raise TimeoutError(f"{n} of {want} model states after {timeout:.0f}s")


def wait_ready(api: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the API at {api} did not become ready in {timeout:.0f}s")


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def upload_run(api: str, settings: Settings, blobs: list[bytes], models: list[str], tag: str) -> dict[str, float]:
    ids = []
    t0 = time.monotonic()
    with httpx.Client(base_url=api, headers={"X-API-Key": settings.api_keys[0]}, timeout=120) as client:
        for i, blob in enumerate(blobs):
            r = client.post("/v1/assets", files={"file": (f"{tag}-{i}.jpg", blob, "image/jpeg")})
            r.raise_for_status()
            ids.append(r.json()["asset_id"])
    done = wait_all(settings, ids, models, timeout=3600)
    lat = last_states(settings, ids)
    return {"assets_s": len(blobs) / (done - t0), "p50_s": pct(lat, 50), "p95_s": pct(lat, 95),
            "mb_per_photo": sum(map(len, blobs)) / len(blobs) / 1e6}


def run(n: int, sizes: list[int], compare: bool, console: Console) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="argus-suite-") as tmp:
        settings = settings_for_tests(Path(tmp) / "state")
        wanted = default_models(settings)
        settings.models = [m for m in wanted if m not in unavailable_models(settings, wanted)]
        models = expected_models(settings)["image"]  # the models that report a state for every photo
        console.print(f"models: {', '.join(models)}; load average before: {os.getloadavg()}")
        with running_stack(settings, console=console):
            db.migrate(settings)
            kafka.ensure_topics(settings, kafka.all_topics(settings, models))
            sup = Supervisor(settings, default_workers(settings, api=True))
            sup.start()
            api = f"http://127.0.0.1:{settings.ports.api}"
            try:
                wait_ready(api)
                warm = photos(2, 1, Path(tmp) / "s", salt=99)
                upload_run(api, settings, warm, models, "warm")  # every consumer joined, Triton warm
                sample = photos(1, 1, Path(tmp) / "s", salt=98)[0]
                costs = bound(settings, models, sample)
                bound_rate = 1.0 / sum(costs.values())
                results: dict[str, Any] = {"models": models, "costs_ms": {k: v * 1000 for k, v in costs.items()},
                                           "bound_assets_s": bound_rate}
                for mp in sizes:
                    console.print(f"[bold]{mp} MP[/bold]: {n} uploads")
                    results[f"{mp}mp"] = upload_run(api, settings, photos(n, mp, Path(tmp) / "s", salt=mp), models,
                                                    f"{mp}mp")
                if compare:
                    big = max(sizes)
                    console.print(f"[bold]{big} MP, full-resolution decode[/bold] (processor.scaled_decode=false)")
                    sup.stop()
                    settings.processor.scaled_decode = False
                    sup = Supervisor(settings, default_workers(settings, api=True))
                    sup.start()
                    wait_ready(api)
                    upload_run(api, settings, photos(2, 1, Path(tmp) / "s", salt=97), models, "warm2")
                    results[f"{big}mp_full_decode"] = upload_run(
                        api, settings, photos(n, big, Path(tmp) / "s", salt=big + 500), models, f"{big}full")
            finally:
                sup.stop()
        results["load_average_after"] = os.getloadavg()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="photos per size class")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 12, 24], choices=sorted(SIZES))
    ap.add_argument("--no-compare", action="store_true", help="skip the full-resolution-decode baseline")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console()
    r = run(args.n, args.sizes, not args.no_compare, console)
    table = Table(title=f"whole default suite through the API ({len(r['models'])} models, {args.n} photos per class)")
    for col in ("case", "MB/photo", "assets/s", "vs 1 MP", "vs bound", "upload->all p50 s", "p95 s"):
        table.add_column(col, justify="right")
    base = r.get(f"{min(args.sizes)}mp", {}).get("assets_s")
    for key in [f"{mp}mp" for mp in args.sizes] + [k for k in r if k.endswith("full_decode")]:
        v = r[key]
        table.add_row(key, f"{v['mb_per_photo']:.2f}", f"{v['assets_s']:.3f}",
                      f"{v['assets_s'] / base:.2f}" if base else "", f"{v['assets_s'] / r['bound_assets_s']:.2f}",
                      f"{v['p50_s']:.1f}", f"{v['p95_s']:.1f}")
    console.print(table)
    console.print("bound (in-process, prepared inputs): " + ", ".join(
        f"{k} {v:.0f} ms" for k, v in r["costs_ms"].items()) + f" -> {r['bound_assets_s']:.3f} assets/s")
    console.print(f"load average after: {r['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
