"""Per-model throughput through Triton vs the same model in-process, measured in the same run.

    .venv/bin/python -m benchmarks.models [--models efficientnet_lite0 face_mtcnn ...] [--n 48] [--batch 8]

Starts a private Triton (temp state dir, free ports, ``--model-config-name=cpu``), prepares the real
sample photos once per model exactly as its processor does (decode, letterbox/resize, tokenise), then:

  in-process: the model's own code in this process (onnxruntime for ONNX models with 2 threads, the
              python-backend ``Core`` with 1 thread like each Triton instance), batches of ``--batch``;
  triton:     the same inputs as batched requests, ``processor.infer_concurrency`` requests in flight
              (what a processor does), through the HTTP client.

Prints items/s for both and the ratio. Inputs are pre-decoded, so the figures isolate model + transport.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from argus.samples import export_samples
from argus.stack.manager import EmbeddedStack
from argus.stack.ports import settings_for_tests
from core.imaging import to_model_input
from core.settings import Settings
from core.triton import TritonClient
from models import face_mtcnn, ocr_ppocr
from models import nsfw_nudenet as nudenet
from models.clip import to_clip_input
from models.frames import letterbox
from models.store import pull
from models.text_embed import TextEmbed

DEFAULT = ["efficientnet_lite0", "face_mtcnn", "ocr_ppocr", "text_embed"]
OUTPUTS = {"efficientnet_lite0": ["EMBEDDING", "PROBS"], "face_mtcnn": ["BOXES", "SCORES", "COUNT"],
           "ocr_ppocr": ["TEXT", "SCORES", "BOXES", "COUNT"], "text_embed": ["EMBEDDING"]}
OUTPUTS["nsfw_nudenet"] = ["RAW"]  # optional model: benchmarked by default only where nudenet is installed
if nudenet.NsfwNudenet(Settings()).unavailable() is None:
    DEFAULT.append("nsfw_nudenet")
OUTPUTS["coco_centernet"] = ["DETECTIONS"]  # in-process: its python-backend Core (1 ORT thread, like Triton's)
DEFAULT.append("coco_centernet")
# CLIP image tower: only with ARGUS_CLIP__WEIGHTS set (no weights ship), e.g. --models clip
OUTPUTS["clip"] = ["EMBEDDING"]
SENTENCES = ["Chelsea the cat. egyptian cat, tabby, tiger cat", "Astronaut Eileen Collins. face. space suit",
             "Cup of coffee. espresso, cup", "HELLO WORLD 2024. Media asset search", "rocket on the launch pad"]


def rows_for(model: str, photos: list[Image.Image], n: int, settings: Settings) -> list[dict[str, np.ndarray]]:
    """n model-input rows, prepared as the model's processor prepares them."""
    if model == "text_embed":
        tok = TextEmbed(settings).tokenizer
        rows = []
        for i in range(n):
            ids, mask = tok([f"{SENTENCES[i % len(SENTENCES)]} #{i}"])
            rows.append({"INPUT_IDS": ids[0], "ATTENTION_MASK": mask[0]})
        return rows
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        if model == "efficientnet_lite0":
            out.append({"IMAGE": to_model_input(img)})
        elif model == "nsfw_nudenet":  # the processor keeps SIZE for decoding; Triton gets IMAGE only
            out.append({"IMAGE": letterbox(img, nudenet.SIZE)[0]})
        elif model == "clip":  # resize shorter side + centre crop, like open_clip's preprocess
            out.append({"IMAGE": to_clip_input(img)})
        elif model == "coco_centernet":  # likewise: SIZE stays in the processor
            out.append({"IMAGE": letterbox(img, 512)[0]})
        else:
            size = face_mtcnn.FACE_SIZE if model == "face_mtcnn" else ocr_ppocr.OCR_SIZE
            canvas, wh = letterbox(img, size)
            out.append({"IMAGE": canvas, "SIZE": wh})
    return out


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if "INPUT_IDS" in rows[0]:  # pad to the longest of the batch, as the tokenizer does for a batch
        t = max(r["INPUT_IDS"].shape[0] for r in rows)
        return {k: np.stack([np.pad(r[k], (0, t - r[k].shape[0])) for r in rows]) for k in rows[0]}
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def in_process(model: str, settings: Settings) -> Callable[[dict[str, np.ndarray]], Any]:
    if model == "nsfw_nudenet":
        from models.inprocess import InProcessModel

        nsfw = InProcessModel(model, settings.triton_repo, threads=2)
        return lambda b: nsfw.infer(b["IMAGE"])
    if model in ("efficientnet_lite0", "text_embed", "clip"):
        from models.inprocess import InProcessModel

        m = InProcessModel(model, settings.triton_repo, threads=2)
        if model == "text_embed":
            return lambda b: m.session.run(None, b)
        return lambda b: m.infer(b["IMAGE"])
    path = settings.triton_repo / model / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"bench_{model}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # one thread, like each Triton instance: torch/ORT threads spin-wait badly on 2 busy cores
    core = module.Core(str(path.parent), {"intra_op_threads": "1"})
    return core.infer  # type: ignore[no-any-return]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(model: str, rows: list[dict[str, np.ndarray]], batch: int, settings: Settings,
          rounds: int = 2) -> tuple[float, float]:
    batches = [_stack(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    local = in_process(model, settings)
    local(batches[0])  # warm-up (first-run allocations, torch/onnxruntime lazy init)
    conc = max(1, settings.processor.infer_concurrency)
    clients = [TritonClient(settings) for _ in range(conc)]

    def call(i: int) -> None:
        clients[i % conc].infer(model, batches[i], OUTPUTS[model])

    # alternate the two sides and keep each side's best round: the 2 cores are shared, so a burst of
    # outside load during one side's only round would otherwise decide the comparison
    t_local, t_triton = float("inf"), float("inf")
    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(call, range(min(conc, len(batches)))))  # warm-up, one per client thread
        for _ in range(rounds):
            t_local = min(t_local, timed(lambda: [local(b) for b in batches]))
            t_triton = min(t_triton, timed(lambda: list(pool.map(call, range(len(batches))))))
    for c in clients:
        c.close()
    return len(rows) / t_local, len(rows) / t_triton


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=DEFAULT)
    ap.add_argument("--n", type=int, default=48, help="images per model (x8 sentences for text_embed)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per side (best kept)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="argus-bench-models-") as tmp:
        settings = settings_for_tests(Path(tmp))
        settings.triton.models = list(args.models)
        for m in args.models:
            pull(settings, m)
        photos = [Image.open(p).convert("RGB") for p in export_samples(Path(tmp) / "samples")]
        stack = EmbeddedStack(settings)
        stack.up(services=["triton"])
        results = {}
        try:
            for m in args.models:
                n = args.n * 8 if m == "text_embed" else args.n
                rows = rows_for(m, photos, n, settings)
                local, triton = bench(m, rows, args.batch, settings, args.rounds)
                results[m] = {"items": n, "in_process_per_s": round(local, 2), "triton_per_s": round(triton, 2),
                              "ratio": round(triton / local, 3)}
                console.print(f"{m}: in-process {local:.1f}/s, triton {triton:.1f}/s")
        finally:
            stack.down(services=["triton"])
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table("model", "items", "in-process items/s", "Triton items/s", "Triton / in-process",
                  title=f"{platform.machine()}, {os.cpu_count()} cores, no GPU; batch {args.batch}; load avg {load}")
    for m, r in results.items():
        table.add_row(m, str(r["items"]), f"{r['in_process_per_s']:.1f}", f"{r['triton_per_s']:.1f}",
                      f"{r['ratio']:.2f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
