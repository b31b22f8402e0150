"""People evaluation: clustering quality, verification ROC and faces/s, on labelled face photos available offline.

    .venv/bin/python -m benchmarks.people_eval [--variants 6] [--detector dlib|mtcnn|both] [--pipeline]

The set (be clear how small it is): 3 identities from 6 source photos — obama (4 photos), biden (1) from the
face_recognition 1.3.0 sdist's test images (tests/data/faces), astronaut (1, scikit-image) — each photo augmented
``--variants`` times (crop, lighting, JPEG quality, blur, scale), plus distractor faces: the 100 LFW faces of
scikit-image's ``lfw_subset`` (25x25 px, upscaled), each counted as its own identity (their names are not shipped,
so two photos of one LFW person would count as a wrong merge: pessimistic). Variants of one photo are easier than
different photos of one person, so the ROC is also reported on pairs of DIFFERENT source photos only.

Descriptors come from ``triton_repo/face_embed/1/model.py``'s ``Core`` in-process (boxes from dlib's HOG detector
or from MTCNN's ``Core``); clustering replays the people sink's rules in memory (sinks/people/assign.py: nearest
assigned face within ``match_distance`` else a new person; then Chinese whispers over the loose faces at
``cluster_distance``), in upload order. ``--pipeline`` also measures faces/s through the embedded pipeline
(upload -> Kafka -> processor -> Triton -> sinks) against the model in-process on the same JPEGs.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from rich.console import Console
from rich.table import Table

from benchmarks.models import in_process
from core.settings import Settings
from models import store
from models.frames import letterbox
from sinks.people.assign import chinese_whispers

FACES = Path(__file__).resolve().parent.parent / "tests" / "data" / "faces"
SOURCES = [("obama", "obama.jpg"), ("obama", "obama2.jpg"), ("obama", "obama3.jpg"),
           ("obama", "obama_partial_face.jpg"), ("biden", "biden.jpg"), ("astronaut", None)]
THRESHOLDS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)


def augment(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One plausible re-publication of a photo: cropped, re-lit, rescaled, blurred a little, re-compressed."""
    w, h = img.size
    c = rng.uniform(0.0, 0.12, 4)
    img = img.crop((int(c[0] * w), int(c[1] * h), int(w - c[2] * w), int(h - c[3] * h)))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.7, 1.3))
    s = rng.uniform(0.5, 1.0)
    img = img.resize((max(1, int(img.width * s)), max(1, int(img.height * s))), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(30, 90)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def build_set(variants: int, seed: int = 7) -> list[tuple[str, int, Image.Image]]:
    """[(identity, source photo index, image)] in a shuffled 'upload order'; distractors last-but-mixed."""
    from skimage import data

    rng = np.random.default_rng(seed)
    items: list[tuple[str, int, Image.Image]] = []
    for k, (who, name) in enumerate(SOURCES):
        src = Image.open(FACES / name).convert("RGB") if name else Image.fromarray(data.astronaut())
        items.append((who, k, src))
        items += [(who, k, augment(src, rng)) for _ in range(variants)]
    lfw = data.lfw_subset()[:100]  # the first 100 are faces
    for i, face in enumerate(lfw):
        g = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").resize((150, 150), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (300, 300), (128, 128, 128))
        canvas.paste(g, (75, 75))
        items.append((f"lfw{i}", 100 + i, canvas))
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def describe(items: list[tuple[str, int, Image.Image]], detector: str, settings: Settings) -> dict[str, Any]:
    embed = in_process("face_embed", settings)
    mtcnn = in_process("face_mtcnn", settings) if detector == "mtcnn" else None
    rows = []
    t0 = time.perf_counter()
    for who, src, img in items:
        arr, size = letterbox(img, 640)
        inp = {"IMAGE": arr[None], "SIZE": size[None]}
        if mtcnn is not None:
            o = mtcnn(inp)
            inp |= {"BOXES": o["BOXES"][:, :32], "SCORES": o["SCORES"][:, :32], "COUNT": np.minimum(o["COUNT"], 32)}
        out = embed(inp)
        k = int(out["FACES"][0, 0])
        if k == 0:
            rows.append((who, src, None, 0.0, 0.0))
            continue
        j = int(np.argmax(out["SIZE_PX"][0, :k]))  # the photo's main face is its identity's
        rows.append((who, src, out["DESCRIPTORS"][0, j].copy(), float(out["SIZE_PX"][0, j]),
                     float(out["SHARPNESS"][0, j])))
    secs = time.perf_counter() - t0
    return {"rows": rows, "faces_per_s": sum(1 for r in rows if r[2] is not None) / secs, "images": len(items)}


def cluster(vecs: list[np.ndarray], match: float, link: float) -> tuple[list[int], list[int]]:
    """The sink's rules in memory: (incremental nearest-face assignment, after a re-clustering pass: Chinese
    whispers over every face, since no person is confirmed in the evaluation)."""
    labels: list[int] = []
    for i, v in enumerate(vecs):
        if i:
            d = np.linalg.norm(np.stack(vecs[:i]) - v, axis=1)
            j = int(np.argmin(d))
            labels.append(labels[j] if d[j] <= match else max(labels) + 1)
        else:
            labels.append(0)
    return labels, (chinese_whispers(np.stack(vecs), link) if vecs else [])


def pairwise(truth: list[str], pred: list[int]) -> dict[str, float]:
    tp = fp = fn = 0
    for a, b in combinations(range(len(truth)), 2):
        same_t, same_p = truth[a] == truth[b], pred[a] == pred[b]
        tp += same_t and same_p
        fp += same_p and not same_t
        fn += same_t and not same_p
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    # BCubed
    n = len(truth)
    bp = np.mean([sum(pred[j] == pred[i] and truth[j] == truth[i] for j in range(n)) /
                  sum(pred[j] == pred[i] for j in range(n)) for i in range(n)])
    br = np.mean([sum(pred[j] == pred[i] and truth[j] == truth[i] for j in range(n)) /
                  sum(truth[j] == truth[i] for j in range(n)) for i in range(n)])
    clusters: dict[int, set[str]] = {}
    for t, p in zip(truth, pred, strict=True):
        clusters.setdefault(p, set()).add(t)
    ids: dict[str, set[int]] = {}
    for t, p in zip(truth, pred, strict=True):
        ids.setdefault(t, set()).add(p)
    return {"precision": prec, "recall": rec, "bcubed_f": float(2 * bp * br / (bp + br)),
            "wrong_merges": sum(1 for s in clusters.values() if len(s) > 1),
            "splits": sum(len(s) - 1 for s in ids.values()), "clusters": len(clusters)}


def roc(rows: list[tuple[str, int, np.ndarray]], cross_photo_only: bool) -> list[tuple[float, float, float, int, int]]:
    same, diff = [], []
    for (ta, sa, va), (tb, sb, vb) in combinations(rows, 2):
        d = float(np.linalg.norm(va - vb))
        if ta == tb:
            if not cross_photo_only or sa != sb:
                same.append(d)
        else:
            diff.append(d)
    s, f = np.asarray(same), np.asarray(diff)
    return [(t, float((s <= t).mean()) if len(s) else float("nan"), float((f <= t).mean()), len(s), len(f))
            for t in THRESHOLDS]


def pipeline_rate(images: list[bytes], console: Console) -> dict[str, float]:
    from argus import pipeline
    from argus.stack.manager import running_stack
    from argus.stack.ports import settings_for_tests
    from argus.workers import Supervisor, Worker
    from benchmarks.model_pipeline import in_process_rates, steady_rate
    from core import db, kafka
    from producers.ingest import Ingestor, Metadata

    with tempfile.TemporaryDirectory(prefix="argus-people-eval-") as tmp:
        settings = settings_for_tests(Path(tmp) / "state")
        settings.models = ["face_embed"]
        with running_stack(settings, console=console):
            db.migrate(settings)
            kafka.ensure_topics(settings, kafka.all_topics(settings, ["face_embed"]))
            model_only, with_prepare = in_process_rates("face_embed", images, settings, 8)
            ing = Ingestor(settings)
            ids = [ing.ingest_bytes(b, Metadata(filename=f"f{i}.jpg")).asset_id for i, b in enumerate(images)]
            sup = Supervisor(settings, [Worker("relay", ["run", "relay"]),
                                        Worker("sink-postgres", ["run", "sink", "postgres"]),
                                        Worker("sink-search", ["run", "sink", "search"]),
                                        Worker("sink-people", ["run", "sink", "people"]),
                                        Worker("processor-face_embed", ["run", "processor", "face_embed"])])
            sup.start()
            try:
                final = pipeline.wait_until_done(settings, ids, "face_embed", timeout=1800, poll_s=0.2)
                assert final.done and final.failed == 0, f"{final}; dead workers: {sup.dead()}"
            finally:
                sup.stop()
            steady = steady_rate(settings, ids, "face_embed")
    return {"in_process_model": model_only, "in_process_with_decode": with_prepare, "pipeline": steady}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", type=int, default=6, help="augmented copies per source photo")
    ap.add_argument("--detector", choices=["dlib", "mtcnn", "both"], default="both")
    ap.add_argument("--pipeline", action="store_true", help="also faces/s through the embedded pipeline")
    args = ap.parse_args()
    console = Console(width=150)
    settings = Settings()
    store.pull(settings, "face_embed")
    store.pull(settings, "face_mtcnn")
    cfg = settings.people
    items = build_set(args.variants)
    n_id = sum(1 for w, _, _ in items if not w.startswith("lfw"))
    console.print(f"set: {n_id} photos of 3 identities (6 source photos x (1 + {args.variants} variants)) + "
                  f"{len(items) - n_id} LFW distractors (25 px, upscaled)")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, no GPU"
    for det in (["dlib", "mtcnn"] if args.detector == "both" else [args.detector]):
        res = describe(items, det, settings)
        rows = res["rows"]
        found = [r for r in rows if r[2] is not None]
        gated = [r for r in found if r[3] >= cfg.min_face_px and r[4] >= cfg.min_sharpness]
        known_found = sum(1 for r in found if not r[0].startswith("lfw"))
        console.print(f"[bold]{det}[/bold]: faces found in {known_found}/{n_id} identity photos and "
                      f"{len(found) - known_found}/{len(items) - n_id} distractors; {len(gated)} pass the quality gate "
                      f"(>= {cfg.min_face_px:g} px, sharpness >= {cfg.min_sharpness:g}); "
                      f"descriptor in-process {res['faces_per_s']:.1f} faces/s (detect+align+describe)")
        t = Table("match / link distance", "stage", "pairwise precision", "pairwise recall", "BCubed F", "wrong merges",
                  "splits", "clusters", title=f"clustering, detector {det} ({len(gated)} faces; {machine})")
        truth = [r[0] for r in gated]
        for match, link in ((0.4, 0.4), (cfg.match_distance, cfg.cluster_distance), (0.55, 0.5), (0.6, 0.6)):
            default = " (default)" if (match, link) == (cfg.match_distance, cfg.cluster_distance) else ""
            for stage, pred in zip(("incremental", "+ re-cluster"), cluster([r[2] for r in gated], match, link),
                                   strict=True):
                m = pairwise(truth, pred)
                t.add_row(f"{match:g} / {link:g}{default}", stage, f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                          f"{m['bcubed_f']:.3f}", str(m["wrong_merges"]), str(m["splits"]), str(m["clusters"]))
        console.print(t)
        r = Table("threshold", "TPR (all same pairs)", "TPR (different photos)", "FPR", "pairs same / diff",
                  title=f"verification ROC, detector {det} (all found faces, no quality gate)")
        triples = [(w, s, v) for w, s, v, _, _ in found]
        for (th, tpr, fpr, ns, nd), (_, tpr2, _, ns2, _) in zip(roc(triples, False), roc(triples, True), strict=True):
            r.add_row(f"{th:g}", f"{tpr:.3f}", f"{tpr2:.3f}", f"{fpr:.4f}", f"{ns} ({ns2} cross-photo) / {nd}")
        console.print(r)
    if args.pipeline:
        imgs = []
        for _who, _src, img in items:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            imgs.append(buf.getvalue())
        rates = pipeline_rate(imgs, console)
        t = Table("path", "images/s", title=f"face_embed throughput ({len(imgs)} images; {machine}; "
                                           f"load avg {' / '.join(f'{x:.1f}' for x in os.getloadavg())})")
        t.add_row("in-process, model only (HOG detect + align + describe)", f"{rates['in_process_model']:.1f}")
        t.add_row("in-process, decode + prepare + model", f"{rates['in_process_with_decode']:.1f}")
        t.add_row("pipeline (upload -> Kafka -> processor -> Triton -> sinks incl. people), steady",
                  f"{rates['pipeline']:.1f}")
        console.print(t)


if __name__ == "__main__":
    main()
