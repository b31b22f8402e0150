"""Near-duplicate detection, measured: recall/precision per transformation family (images and
videos), micro-average precision, threshold calibration, and query latency at 100k and 1M hashes.

    .venv/bin/python -m benchmarks.ndd_eval [--quick] [--no-write]

The matcher runs in-process (retrieval/ndd/matcher.py, the same code the API holds), fed directly with
hashes: no servers. Images: every real photo in skimage.data + sklearn's samples is indexed, with
scikit-image's LFW face subset as extra real distractors; each query is a transformed copy of one
indexed photo and only that photo is a correct answer (the stereo motorcycle pair, two shots of the
same scene, must NOT match each other: "similar" is not "duplicate"). Videos: pan/zoom videos over
the photos (PyAV), their copies (re-encoded, rescaled, trimmed, cut out of a longer video, with a
black intro) and unrelated videos sharing the same black intro. Results are printed and written
into docs/ndd.md between the ndd-eval markers.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import ndd_media as media
from core.settings import NddSettings
from models.pdq import hashing as pdq
from models.pdq.video import hash_video
from retrieval.ndd.matcher import IndexedAsset, Matcher, query_from_image

DOC = Path(__file__).resolve().parent.parent / "docs" / "ndd.md"


@dataclass
class Tally:
    queries: int = 0
    found: int = 0
    tp: int = 0
    fp: int = 0
    fp_examples: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.queries if self.queries else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0


def micro_ap(scored: list[tuple[float, bool]], positives: int) -> float:
    """Micro-average precision (as in Copydays/DISC): every (query, result) pair of every query pooled
    and ranked by distance; AP of that single ranking against all ground-truth pairs."""
    scored = sorted(scored, key=lambda x: x[0])
    hits, ap = 0, 0.0
    for rank, (_d, ok) in enumerate(scored, 1):
        if ok:
            hits += 1
            ap += hits / rank
    return ap / max(1, positives)


# ------------------------------------------------------------------------------ images
def image_eval(params: NddSettings, out: list[str]) -> dict[str, float]:
    import skimage.data as sd

    photos = media.real_photos()
    families = media.image_families()
    m = Matcher(params)
    items = []
    for name, img in photos.items():
        h, q = pdq.hash_image(img)
        items.append(IndexedAsset(name, "image", h, q))
    faces = sd.lfw_subset()[:200]
    for i, f in enumerate(faces):
        img = Image.fromarray((np.asarray(f) * 255).astype(np.uint8)).convert("RGB").resize((100, 100))
        h, q = pdq.hash_image(img)
        items.append(IndexedAsset(f"lfw{i}", "image", h, q))
    # 3x3 tiles of every photo: more real-content distractors (a query matching a tile of its OWN
    # source is neither right nor wrong and is not counted)
    for name, img in photos.items():
        w, h_ = img.size
        for k in range(9):
            x, y = (k % 3) * w // 3, (k // 3) * h_ // 3
            th, tq = pdq.hash_image(img.crop((x, y, x + w // 3, y + h_ // 3)))
            items.append(IndexedAsset(f"tile:{name}:{k}", "image", th, tq))
    m.upsert(items)
    low_q = [a.asset_id for a in items if a.quality < params.image_min_quality]
    # distances between indexed pictures of different sources: the false-match tail the threshold must avoid
    source = [a.asset_id.split(":")[1] if a.asset_id.startswith("tile:") else a.asset_id for a in items]
    bits = np.unpackbits(pdq.codes([a.hash for a in items if a.hash]), axis=1).astype(np.int16)
    dist = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    iu = np.triu_indices(len(items), 1)
    neg = np.array([dist[i, j] for i, j in zip(*iu, strict=True) if source[i] != source[j]])
    # every query against every indexed hash within a wide radius: one pass, then any threshold
    wide = 96
    results: dict[str, list[tuple[str, str, int]]] = {}  # family -> (source, found asset, distance)
    queries: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for fam, transforms in families.items():
        for src, img in photos.items():
            for tname, tf in transforms:
                query = query_from_image(pdq.to_rgb_array(tf(img)))
                qid = f"{src}/{tname}"
                queries.setdefault(fam, []).append(qid)
                for match in m.query_image(query, wide, with_videos=False):
                    results.setdefault(fam, []).append((qid, match.asset_id, int(match.distance)))
    hash_s = time.perf_counter() - t0
    nq = sum(len(v) for v in queries.values())

    def tally(fam: str, t: int) -> Tally:
        tl = Tally(queries=len(queries[fam]))
        found = set()
        for qid, asset, d in results.get(fam, []):
            if d > t:
                continue
            if asset == qid.split("/")[0]:
                tl.tp += 1
                found.add(qid)
            elif asset.startswith(f"tile:{qid.split('/')[0]}:"):
                continue
            else:
                tl.fp += 1
                if len(tl.fp_examples) < 3:
                    tl.fp_examples.append(f"{qid}->{asset}@{d}")
        tl.found = len(found)
        return tl

    mild = list(media.MILD_FAMILIES)
    # calibration: thresholds 8..64; precision over ALL families (a false match is false whatever the edit)
    out.append("\n### Images: threshold calibration\n")
    out.append(f"{len(photos)} indexed photos + {len(faces)} LFW face photos + {9 * len(photos)} photo tiles as "
               f"distractors; {nq} queries "
               f"({len(families)} families x {len(photos)} photos x variants); hashing + querying took "
               f"{hash_s:.1f} s.\n")
    out.append("| threshold | recall (mild families) | precision (mild) | recall (all) | precision (all) "
               f"| false matches | pairs of different pictures within threshold (of {len(neg):,}) |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|")
    best_t = 0
    for t in (8, 16, 24, 31, 40, 48, 56, 64):
        tm = [tally(f, t) for f in mild]
        ta = [tally(f, t) for f in families]
        rec_m = sum(x.found for x in tm) / sum(x.queries for x in tm)
        prec_m = sum(x.tp for x in tm) / max(1, sum(x.tp + x.fp for x in tm))
        rec_a = sum(x.found for x in ta) / sum(x.queries for x in ta)
        fp_a = sum(x.fp for x in ta)
        prec_a = sum(x.tp for x in ta) / max(1, sum(x.tp + x.fp for x in ta))
        out.append(f"| {t} | {rec_m:.3f} | {prec_m:.3f} | {rec_a:.3f} | {prec_a:.3f} | {fp_a} | "
                   f"{int((neg <= t).sum())} |")
        if prec_a >= 0.99:
            best_t = t
    t = params.image_threshold
    out.append(f"\nLargest threshold with precision >= 0.99 over all families: **{best_t}**; "
               f"default in use: **{t}** (`ndd.image_threshold`). Distances between different pictures: min "
               f"{int(neg.min())}, 0.1th percentile {np.percentile(neg, 0.1):.0f}, median {np.median(neg):.0f}.\n")
    out.append(f"\n### Images: per family at the default threshold ({t}, dihedral queries "
               f"{'on' if params.dihedral else 'off'})\n")
    out.append("| family | variants | queries | recall | precision | false matches (examples) |")
    out.append("|---|---|---:|---:|---:|---|")
    all_pairs: list[tuple[float, bool]] = []
    mild_pairs: list[tuple[float, bool]] = []
    figures: dict[str, float] = {}
    for fam, transforms in families.items():
        tl = tally(fam, t)
        figures[f"recall:{fam}"] = tl.recall
        out.append(f"| {fam}{' (mild)' if fam in mild else ''} | {', '.join(n for n, _ in transforms)} | "
                   f"{tl.queries} | {tl.recall:.3f} | {tl.precision:.3f} | {tl.fp} {'; '.join(tl.fp_examples)} |")
        pairs = [(float(d), asset == qid.split("/")[0]) for qid, asset, d in results.get(fam, [])]
        all_pairs += pairs
        if fam in mild:
            mild_pairs += pairs
    tm = [tally(f, t) for f in mild]
    ta = [tally(f, t) for f in families]
    mild_q = sum(len(queries[f]) for f in mild)
    figures.update(
        mild_recall=sum(x.found for x in tm) / mild_q,
        mild_precision=sum(x.tp for x in tm) / max(1, sum(x.tp + x.fp for x in tm)),
        all_precision=sum(x.tp for x in ta) / max(1, sum(x.tp + x.fp for x in ta)),
        mild_uap=micro_ap(mild_pairs, mild_q),
        all_uap=micro_ap(all_pairs, nq),
    )
    out.append(f"\n**Mild families (JPEG >= 30, scale, crop <= 20%, colour):** recall {figures['mild_recall']:.3f} at "
               f"precision {figures['mild_precision']:.3f}; micro-average precision (muAP, ranking by distance "
               f"up to {wide}) {figures['mild_uap']:.3f}. **All families:** precision {figures['all_precision']:.3f}, "
               f"muAP {figures['all_uap']:.3f}.")
    mild_no_crop = [f for f in mild if not f.startswith("crop")]
    tnc = [tally(f, t) for f in mild_no_crop]
    figures["mild_nocrop_recall"] = sum(x.found for x in tnc) / sum(x.queries for x in tnc)
    out.append(f" Mild families without crops: recall {figures['mild_nocrop_recall']:.3f}.")
    d_pair = pdq.hamming(pdq.hash_image(photos["motorcycle_left"])[0], pdq.hash_image(photos["motorcycle_right"])[0])
    out.append(f"\nStereo pair (two shots of one scene, 'similar' not 'duplicate'): PDQ distance {d_pair} "
               f"(kept apart at any threshold <= {d_pair - 1}). Indexed pictures below image quality "
               f"{params.image_min_quality} (exact matches only): {len(low_q)} ({', '.join(low_q[:5])}...).\n")
    return figures


# ------------------------------------------------------------------------------ videos
def video_eval(params: NddSettings, out: list[str], n_sources: int) -> dict[str, float]:
    photos = media.real_photos()
    fps = 10
    names = ["astronaut", "chelsea", "coffee", "rocket", "china", "flower", "motorcycle_left", "horse", "camera",
             "coins"][:n_sources]
    others = ["brick", "grass", "gravel", "page", "retina", "moon"]
    m = Matcher(params)
    t0 = time.perf_counter()
    originals: dict[str, bytes] = {}
    for i, n in enumerate(names):
        originals[n] = media.encode(media.pan_zoom_frames(photos[n], 20, fps=fps, seed=i), fps)
    # a longer video made of three scenes (the 'clip cut from a longer video' case)
    comp_frames = [f for i, n in enumerate(others[:3])
                   for f in media.pan_zoom_frames(photos[n], 15, fps=fps, seed=50 + i)]
    originals["compilation"] = media.encode(comp_frames, fps)
    # unrelated videos sharing ONE black intro, indexed too
    intro = list(media.black_frames(4, fps))
    for i, n in enumerate(others[3:]):
        originals[f"intro-{n}"] = media.encode(intro + list(media.pan_zoom_frames(photos[n], 12, fps=fps, seed=90 + i)),
                                               fps)
    index_items = []
    for vid, data in originals.items():
        vh = hash_video(data, params.video_fps, params.video_max_frames)
        index_items.append(IndexedAsset(vid, "video", None, max(f.quality for f in vh.frames), tuple(vh.frames),
                                        vh.interval_ms))
    m.upsert(index_items)
    queries: list[tuple[str, str, bytes, int | None]] = []  # (family, truth or '', data, truth offset ms)
    for n in names:
        for fam, (data, start) in media.video_variants(originals[n]).items():
            queries.append((fam, n, data, start))
    for start_s in (10, 22, 33):  # 8 s clips, two of them across a scene cut
        clip = media.encode(comp_frames[start_s * fps:(start_s + 8) * fps], fps, size=(240, 180), crf=30)
        queries.append(("subclip-of-longer", "compilation", clip, start_s * 1000))
    negatives = []
    for i, neg_src in enumerate(["immunohistochemistry", "hubble_deep_field", "clock"]):  # new footage, SAME intro
        negatives.append(media.encode(intro + list(media.pan_zoom_frames(photos[neg_src], 10, fps=fps, seed=70 + i)),
                                      fps))
    negatives.append(media.encode(media.black_frames(6, fps), fps))
    for data in negatives:
        queries.append(("unrelated+same-intro", "", data, None))
    gen_s = time.perf_counter() - t0
    hash_ms: list[float] = []
    query_ms: list[float] = []
    hashed = []
    for fam, truth, data, start_ms in queries:
        t1 = time.perf_counter()
        hashed.append((fam, truth, hash_video(data, params.video_fps, params.video_max_frames), start_ms))
        hash_ms.append((time.perf_counter() - t1) * 1000)

    def run(threshold: int) -> tuple[dict[str, Tally], dict[str, list[int]]]:
        fams: dict[str, Tally] = {}
        offset_err: dict[str, list[int]] = {}
        for fam, truth, vh, start in hashed:
            t2 = time.perf_counter()
            matches = m.query_video(vh.frames, vh.interval_ms, threshold, with_images=False)
            query_ms.append((time.perf_counter() - t2) * 1000)
            tl = fams.setdefault(fam, Tally())
            tl.queries += 1
            for x in matches:
                if x.asset_id == truth:
                    tl.tp += 1
                    tl.found += 1
                    if start is not None and x.video is not None:
                        offset_err.setdefault(fam, []).append(abs(x.video.offset_ms - start))
                else:
                    tl.fp += 1
                    if len(tl.fp_examples) < 2:
                        tl.fp_examples.append(f"{truth or 'neg'}->{x.asset_id}")
        return fams, offset_err

    calib = []
    for t in (24, 31, 40, 48, 56):
        fams_t, _ = run(t)
        pos = [tl for f, tl in fams_t.items() if f != "unrelated+same-intro"]
        calib.append(f"| {t} | {sum(x.found for x in pos) / sum(x.queries for x in pos):.3f} | "
                     f"{sum(x.fp for x in fams_t.values())} |")
    fams, offset_err = run(params.frame_threshold)
    out.append("\n### Videos\n")
    out.append(f"Index: {len(names)} 20-s pan/zoom videos (320x240, 10 fps, h264) + a 45-s three-scene video + "
               f"{len(others[3:])} unrelated videos that all start with the same 4-s black intro "
               f"({sum(len(a.frames) for a in index_items)} frame hashes at {params.video_fps:g} fps). "
               f"Media generation {gen_s:.0f} s. Match rule: >= {params.video_min_frames} aligned frames within "
               f"distance {params.frame_threshold} covering >= {params.video_min_share:.0%} of the shorter video; "
               f"frames below quality {params.min_quality} never vote. Copies are sampled at other phases than "
               f"the original (a clip starting at 6.6 s is hashed at 6.6, 7.6, ... s, the original at 6, 7, ...), "
               f"so aligned frames differ by up to half a second of camera motion.\n")
    out.append("| frame threshold | recall (all copy families) | false matches |")
    out.append("|---:|---:|---:|")
    out.extend(calib)
    out.append(f"\nPer family at the default frame threshold ({params.frame_threshold}, `ndd.frame_threshold`):\n")
    out.append("| family | queries | recall | precision | median offset error (ms) | false matches |")
    out.append("|---|---:|---:|---:|---:|---|")
    figures: dict[str, float] = {}
    for fam, tl in fams.items():
        errs = offset_err.get(fam, [])
        med = f"{int(np.median(errs))}" if errs else "-"
        rec = f"{tl.recall:.3f}" if fam != "unrelated+same-intro" else "- (no truth)"
        out.append(f"| {fam} | {tl.queries} | {rec} | {tl.precision:.3f} | {med} | {tl.fp} "
                   f"{'; '.join(tl.fp_examples)} |")
        figures[f"video_recall:{fam}"] = tl.recall
        figures[f"video_fp:{fam}"] = tl.fp
    out.append(f"\nVideo hashing (decode + 1 fps PDQ, 320x240): p50 {np.percentile(hash_ms, 50):.0f} ms per "
               f"query video; "
               f"matching p50 {np.percentile(query_ms, 50):.1f} ms.\n")
    return figures


# ------------------------------------------------------------------------------ latency
def latency(params: NddSettings, out: list[str], sizes: list[int], rounds: int = 5) -> dict[str, float]:
    import os

    import faiss

    from models.pdq.video import FrameHash

    faiss.omp_set_num_threads(1)  # one core: the machine is shared; a query never gets more in production either
    rng = np.random.default_rng(7)
    photos = media.real_photos()
    real = [q for q in (query_from_image(pdq.to_rgb_array(media.jpeg(img, 50))) for img in photos.values())
            if q.quality >= params.min_quality][:20]
    out.append("\n### Query latency (in-process matcher, faiss on 1 thread)\n")
    out.append("Image index = N synthetic random PDQ hashes + the 23 real photos; video index (separate) = N "
               "random frame hashes; image queries = JPEG-50 copies of 20 real photos (always found), with their "
               "8 dihedral variants or without; video query = 20 frames. The two index kinds are measured in "
               f"interleaved rounds ({rounds}) so that the load of the shared machine hits both alike; load "
               "average during the run is given.\n")
    out.append("| index | N | build s | image p50 ms | image p95 ms | no-dihedral p50 | p95 | video (20 frames) p50 "
               "| p95 | load avg |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    figures: dict[str, float] = {}
    for n in sizes:
        codes = rng.integers(0, 256, (n, pdq.NBYTES), dtype=np.uint8)
        matchers: dict[str, Matcher] = {}
        vmatchers: dict[str, Matcher] = {}
        build: dict[str, float] = {}
        for kind in ("flat", "mih"):
            t0 = time.perf_counter()
            mt = Matcher(params.model_copy(update={"index": kind}))
            mt.images.add(codes, [f"r{i}" for i in range(n)])
            mt.upsert([IndexedAsset(name, "image", *pdq.hash_image(img)) for name, img in photos.items()])
            build[kind] = time.perf_counter() - t0
            matchers[kind] = mt
            # videos measured on their own index: N frame hashes (N/600 ten-minute videos)
            vm = Matcher(params.model_copy(update={"index": kind}))
            vm.frames.add(codes, [(f"v{i // 600}", i % 600 * 1000) for i in range(n)])
            vmatchers[kind] = vm
        vq = [FrameHash(i * 1000, bytes(c).hex(), 100) for i, c in
              enumerate(rng.integers(0, 256, (20, pdq.NBYTES), dtype=np.uint8))]
        lat: dict[tuple[str, str], list[float]] = {}
        loads = []
        for _ in range(rounds):
            loads.append(os.getloadavg()[0])
            for kind, mt in matchers.items():
                for dihedral in (True, False):
                    mt.p = params.model_copy(update={"index": kind, "dihedral": dihedral})
                    for q in real:
                        t1 = time.perf_counter()
                        res = mt.query_image(q)
                        lat.setdefault((kind, str(dihedral)), []).append((time.perf_counter() - t1) * 1000)
                        assert res, "the real photo's copy must be found"
                for _ in range(4):
                    t1 = time.perf_counter()
                    vmatchers[kind].query_video(vq, 1000)
                    lat.setdefault((kind, "video"), []).append((time.perf_counter() - t1) * 1000)
        for kind in matchers:
            d, nd, v = lat[(kind, "True")], lat[(kind, "False")], lat[(kind, "video")]
            row = [np.percentile(x, p) for x in (d, nd, v) for p in (50, 95)]
            out.append(f"| {kind} | {n:,} | {build[kind]:.1f} | " + " | ".join(f"{x:.1f}" for x in row)
                       + f" | {np.mean(loads):.1f} |")
            figures[f"p95_ms:{kind}:{n}"] = float(row[1])
        del matchers, vmatchers, codes
    return figures


def write_doc(text: str, part: str) -> None:
    """Replace one measured part of docs/ndd.md (between its markers), keeping the hand-written text."""
    begin, end = f"<!-- ndd-eval:{part}:begin -->", f"<!-- ndd-eval:{part}:end -->"
    body = DOC.read_text() if DOC.exists() else "# Near-duplicate detection\n"
    if begin not in body:
        body += f"\n{begin}\n{end}\n"
    body = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _m: f"{begin}\n{text}\n{end}", body, flags=re.S)
    DOC.write_text(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer videos, 100k only (a smoke run)")
    ap.add_argument("--part", choices=("all", "quality", "latency"), default="all",
                    help="quality: images + videos; latency: 100k/1M query latency")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/ndd.md alone")
    args = ap.parse_args()
    params = NddSettings()
    stamp = (f"Measured by `python -m benchmarks.ndd_eval --part {{part}}` on {time.strftime('%Y-%m-%d %H:%M')} "
             f"(x86_64, 2 cores shared with other jobs, no GPU).\n")
    parts: dict[str, list[str]] = {}
    if args.part in ("all", "quality"):
        parts["quality"] = [stamp.format(part="quality")]
        image_eval(params, parts["quality"])
        video_eval(params, parts["quality"], 4 if args.quick else 8)
    if args.part in ("all", "latency"):
        parts["latency"] = [stamp.format(part="latency")]
        latency(params, parts["latency"], [100_000] if args.quick else [100_000, 1_000_000])
    for part, out in parts.items():
        text = "\n".join(out)
        print(text)
        if not args.no_write:
            write_doc(text, part)
            print(f"\n{part}: written to {DOC}")


if __name__ == "__main__":
    main()
