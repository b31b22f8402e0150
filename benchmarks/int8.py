"""INT8 vs FP32, per ONNX model: speed and agreement on held-back photos (same run, same machine).

    .venv/bin/python -m benchmarks.int8 [--models efficientnet_lite0 nsfw_nudenet coco_centernet] [--json out.json]

Static quantisation with onnxruntime (QDQ, per-channel weights, MinMax calibration) on a calibration set cut from
the sample photos (crops, flips, scales of the first half); the held-back set is the other half with its own
crops. Agreement with the FP32 model (the reference):
  * classification (EfficientNet-Lite0): top-1 equal, top-5 overlap, embedding cosine;
  * detection (COCO CenterNet, NudeNet): boxes of score >= 0.3 matched at IoU >= 0.5 with the same class
    (an mAP-style F1 between the two models' detections).
A model whose INT8 loses more than ~2 points stays FP32 (docs/benchmarks.md records the decision per model).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from rich.console import Console
from rich.table import Table

from argus.samples import export_samples
from core.settings import Settings
from models.frames import letterbox
from models.triton_batching import OnnxCore

SIZES = {"efficientnet_lite0": 224, "coco_centernet": 512, "nsfw_nudenet": 320}


def views(img: Image.Image, k: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = [img]
    w, h = img.size
    for _ in range(k - 1):
        f = rng.uniform(0.6, 0.95)
        x, y = rng.integers(0, int(w * (1 - f)) + 1), rng.integers(0, int(h * (1 - f)) + 1)
        v = img.crop((x, y, x + int(w * f), y + int(h * f)))
        out.append(ImageOps.mirror(v) if rng.random() < 0.5 else v)
    return out


def inputs(model: str, imgs: list[Image.Image]) -> dict[str, np.ndarray]:
    size = SIZES[model]
    if model == "efficientnet_lite0":
        return {"IMAGE": np.stack([np.asarray(i.resize((size, size), Image.Resampling.BILINEAR)) for i in imgs])}
    boxes = [letterbox(i, size) for i in imgs]
    return {"IMAGE": np.stack([b[0] for b in boxes])}


class Calibration:
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def quantise(src: Path, dst: Path, calib: dict[str, np.ndarray]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    name = next(iter(calib))
    feeds = [{name: calib[name][i : i + 1]} for i in range(len(calib[name]))]
    quantize_static(str(pre), str(dst), Calibration(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


def agreement(model: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    if model == "efficientnet_lite0":
        pa, pb = a["PROBS"], b["PROBS"]
        top1 = float(np.mean(pa.argmax(1) == pb.argmax(1)))
        t5a, t5b = np.argsort(-pa, 1)[:, :5], np.argsort(-pb, 1)[:, :5]
        top5 = float(np.mean([len(set(x) & set(y)) / 5 for x, y in zip(t5a, t5b, strict=True)]))
        ea, eb = a["EMBEDDING"], b["EMBEDDING"]
        cos = float(np.mean(np.sum(ea * eb, 1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1))))
        return {"top1_agreement": top1, "top5_agreement": top5, "embedding_cosine": cos}
    key = next(iter(a))
    if model == "nsfw_nudenet":  # raw YOLO grid: decode both (models/nsfw_nudenet.decode) into boxes
        from models.nsfw_nudenet import decode

        def rows(raw: np.ndarray) -> np.ndarray:
            dets = decode(raw, (320.0, 320.0), region_threshold=0.3)
            return np.array([[*d.box, d.score, d.class_id] for d in dets], dtype=np.float32).reshape(-1, 6)

        a, b = {key: [rows(r) for r in a[key]]}, {key: [rows(r) for r in b[key]]}
    matched = total_a = total_b = 0
    for da, db in zip(a[key], b[key], strict=True):
        da, db = da[da[:, 4] >= 0.3], db[db[:, 4] >= 0.3]
        total_a, total_b = total_a + len(da), total_b + len(db)
        used: set[int] = set()
        for box in da:
            for j, other in enumerate(db):
                if j in used or int(other[5]) != int(box[5]):
                    continue
                ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
                iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
                inter = ix * iy
                union = ((box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1])
                         - inter)
                if union > 0 and inter / union >= 0.5:
                    used.add(j)
                    matched += 1
                    break
    f1 = 2 * matched / (total_a + total_b) if total_a + total_b else 1.0
    return {"detection_f1": f1, "fp32_boxes": float(total_a), "int8_boxes": float(total_b)}


def speed(core: OnnxCore, feeds: dict[str, np.ndarray], batch: int = 8) -> float:
    name = next(iter(feeds))
    x = feeds[name]
    core.infer({name: x[:batch]})
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        core.infer({name: x[i : i + batch]})
    return len(x) / (time.perf_counter() - t0)


def run(models: list[str], console: Console) -> dict[str, Any]:
    settings = Settings()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="argus-int8-") as tmp:
        photos = [Image.open(p).convert("RGB") for p in export_samples(Path(tmp) / "samples")]
        calib_imgs = [v for i, p in enumerate(photos[::2]) for v in views(p, 6, i)]
        held_imgs = [v for i, p in enumerate(photos[1::2]) for v in views(p, 6, 100 + i)]
        for model in models:
            src = settings.triton_repo / model / "1" / "model.onnx"
            if not src.exists():
                console.print(f"[yellow]{model}: {src} missing (argus models pull {model}); skipped")
                continue
            console.print(f"[bold]{model}[/bold]: calibrating on {len(calib_imgs)} views, "
                          f"checking on {len(held_imgs)} held-back views")
            dst = Path(tmp) / f"{model}.int8.onnx"
            quantise(src, dst, inputs(model, calib_imgs))
            fp32 = OnnxCore(str(src.parent), {"intra_op_threads": "1"})
            int8 = OnnxCore(str(dst.parent), {"intra_op_threads": "1"}, artifact=dst.name)
            held = inputs(model, held_imgs)
            out32, out8 = fp32.infer(held), int8.infer(held)
            results[model] = {**agreement(model, out32, out8), "fp32_items_s": speed(fp32, held),
                              "int8_items_s": speed(int8, held), "mb_fp32": src.stat().st_size / 1e6,
                              "mb_int8": dst.stat().st_size / 1e6}
            results[model]["speedup"] = results[model]["int8_items_s"] / results[model]["fp32_items_s"]
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(SIZES))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console()
    r = run(args.models, console)
    table = Table(title="INT8 (static, QDQ, per-channel) vs FP32, one thread, held-back sample-photo views")
    for col in ("model", "FP32 items/s", "INT8 items/s", "speed-up", "agreement", "MB FP32 -> INT8"):
        table.add_column(col, justify="right")
    for model, v in r.items():
        agree = (f"top-1 {v['top1_agreement']:.3f}, top-5 {v['top5_agreement']:.3f}, cos {v['embedding_cosine']:.4f}"
                 if "top1_agreement" in v else
                 f"F1 {v['detection_f1']:.3f} ({v['fp32_boxes']:.0f} vs {v['int8_boxes']:.0f} boxes)")
        table.add_row(model, f"{v['fp32_items_s']:.1f}", f"{v['int8_items_s']:.1f}", f"{v['speedup']:.2f}x", agree,
                      f"{v['mb_fp32']:.1f} -> {v['mb_int8']:.1f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
