"""The whole default suite on newsroom-sized photos, through the API, against its in-process bound (same run).

    .venv/bin/python -m benchmarks.suite [--n 12] [--sizes 1 12 24] [--no-compare] [--json out.json]

Starts a private embedded stack with every default model that is available here, the workers and the API, then:
  1. the bound: each model's cost per item on inputs it has already prepared (no decode, no queue): Triton models
     through ``Model.infer`` on a prepared batch, in-process stages (pdq, renditions) on a decoded 1 MP photo,
     MiniLM on the assets' texts; bound = 1 / sum of the per-model seconds per asset;
  2. for each size class (1, 12, 24 megapixels; JPEG q90 made from the sample photos): N uploads through
     ``POST /v1/assets`` while the workers run; assets/s from the first upload to the last model state, and the
     per-asset time from upload to its last model state (p50/p95);
  3. ``--compare`` (default): the largest class again on fresh copies, (a) without the ingest working copy
     (``processor.working_copy = false``: every processor fetches the original and decodes it at its own DCT
     scale) and (b) with full-resolution decoding as well (``processor.scaled_decode = false``: before issue 15).
  4. agreement (unless ``--no-agreement``): each model that reads the working copy, on the sample photos and on
     24 MP versions of them, from the copy vs from the original (labels, text, numbers, embeddings);
  5. ``--profile DIR``: where the time goes, per size class: CPU seconds per asset of every process (workers,
     Triton, PostgreSQL, SeaweedFS, tansu; psutil, children included), the stage seconds each worker reports on
     its /metrics (``argus_stage_seconds_total``: processors fetch, decode, wait_inputs, infer, emit, commit; sinks
     write, offsets, kafka_commit) and the bytes processors fetched (originals vs working copies); the sinks run
     under pyinstrument (text reports in DIR), and one processor's fetch + decode (``_fetch_prepare``) of a 1 MP
     and a 24 MP photo is profiled in-process (the processors' work runs on thread pools, which pyinstrument
     does not sample from the outside). Written to DIR/profile.json and printed.
Prints one table with the ratios; the figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image
from rich.console import Console
from rich.table import Table

from api.web_routes import expected_models
from argus.samples import export_samples
from argus.stack.manager import running_stack
from argus.stack.ports import free_ports, settings_for_tests
from argus.workers import Supervisor, default_workers
from core import db, kafka
from core.settings import Settings
from core.triton import TritonClient
from models.registry import default_models, get_model, unavailable_models
from models.text_embed import TextEmbed
from processors.runtime import Processor
from producers.ingest import Ingestor, Metadata
from producers.working_copy import encode_working_copy, working_side
from schemas.events import MediaUploaded, WorkingCopy

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


def agreement(settings: Settings, models: list[str], blobs: list[bytes]) -> dict[str, Any]:
    """Per model: what it says about each photo read from the working copy vs read from the original (the same
    processor code, ``prepare`` -> ``infer`` -> payload), and for reference what the previous change (DCT-scaled
    decode, accepted before) did: the original at full resolution vs DCT-scaled. Per pair: top-1 label the same,
    mean Jaccard of the label sets, mean character similarity of the text (difflib ratio; OCR), share of photos
    with the same numbers (face count ...), mean/min cosine of the embeddings, PDQ Hamming distance; and the
    photos whose text or numbers differ. Models that read the original anyway are skipped."""
    import difflib

    side = working_side(settings)
    full = settings.model_copy(deep=True)
    full.processor.scaled_decode = False
    triton = TritonClient(settings)
    out: dict[str, Any] = {}

    def compare(a: Any, b: Any, acc: dict[str, list[float]]) -> bool:
        fa, fb = a.search_fields(), b.search_fields()
        la, lb = set(fa.labels), set(fb.labels)
        acc["labels_jaccard"].append(len(la & lb) / len(la | lb) if la | lb else 1.0)
        acc["top1_same"].append(1.0 if fa.labels[:1] == fb.labels[:1] else 0.0)
        ta, tb = " ".join(fa.text.split()), " ".join(fb.text.split())
        acc["text_ratio"].append(difflib.SequenceMatcher(None, ta, tb).ratio() if ta or tb else 1.0)
        acc["numeric_same"].append(1.0 if fa.numeric == fb.numeric else 0.0)
        if fa.embedding is not None and fb.embedding is not None:
            va, vb = np.asarray(fa.embedding), np.asarray(fb.embedding)
            acc["embedding_cos"].append(float(va @ vb / max(np.linalg.norm(va) * np.linalg.norm(vb), 1e-12)))
        ha, hb = getattr(a, "hash", None), getattr(b, "hash", None)
        if isinstance(ha, str) and isinstance(hb, str):
            acc["pdq_hamming"].append(float(bin(int(ha, 16) ^ int(hb, 16)).count("1")))
        return ta != tb or fa.numeric != fb.numeric

    try:
        copies = []
        for blob in blobs:
            made = encode_working_copy(blob, settings, side) if side else None
            if made is None:
                continue
            jpeg, w, h, sw, sh = made
            wc = WorkingCopy(object_key="k-work", width=w, height=h, size_bytes=len(jpeg), source_width=sw,
                             source_height=sh)
            copies.append((blob, jpeg, wc))
        for name in models:
            model = get_model(settings, name)
            if name == "renditions" or model.consumes != "media" or not copies:
                continue
            if not model.reads_working_copy(_event(copies[0][2])):
                continue
            full_model = get_model(full, name)
            pairs: dict[str, dict[str, list[float]]] = {
                k: {m: [] for m in ("labels_jaccard", "top1_same", "text_ratio", "numeric_same", "embedding_cos",
                                    "pdq_hamming")} for k in ("copy", "full_decode")}
            diffs = []
            for i, (blob, jpeg, wc) in enumerate(copies):
                payloads = []
                for mdl, ev, data in ((model, _event(None), blob), (model, _event(wc), jpeg),
                                      (full_model, _event(None), blob)):
                    rows = mdl.prepare(ev, data)
                    batch = {k: np.stack([it.row[k] for it in rows]) for k in rows[0].row}
                    payloads.append(mdl.to_payloads(mdl.infer(triton, batch), len(rows))[0])
                orig, copy, fullres = payloads
                if compare(orig, copy, pairs["copy"]):
                    fo, fc = orig.search_fields(), copy.search_fields()
                    diffs.append({"photo": i, "original": [fo.text[:200], fo.numeric],
                                  "copy": [fc.text[:200], fc.numeric]})
                compare(fullres, orig, pairs["full_decode"])
            out[name] = {"photos": len(copies), "diffs": diffs}
            for k, acc in pairs.items():
                out[name][k] = {key: float(np.mean(v)) for key, v in acc.items() if v}
                for key in ("embedding_cos", "pdq_hamming"):
                    if acc[key]:
                        out[name][k][f"{key}_worst"] = float(min(acc[key]) if key == "embedding_cos" else max(acc[key]))
    finally:
        triton.close()
    return out


def _event(wc: WorkingCopy | None) -> MediaUploaded:
    return MediaUploaded(event_id="bench", asset_id="0" * 64, bucket="b", object_key="k", media_type="image",
                         content_type="image/jpeg", size_bytes=1, filename="bench.jpg", working_copy=wc)


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


# -------------------------------------------------------------------------------------------------- --profile
def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def scrape(ports: dict[str, int]) -> dict[str, dict[str, float]]:
    """worker -> {"stage:<name>" | "fetched:<kind>": value} from each worker's /metrics."""
    out: dict[str, dict[str, float]] = {}
    for worker, port in ports.items():
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        vals: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r"(argus_stage_seconds_total|argus_fetched_bytes_total)\{([^}]*)\} (\S+)", line)
            if m:
                lab = _labels(m.group(2))
                key = f"stage:{lab['stage']}" if m.group(1) == "argus_stage_seconds_total" else f"fetched:{lab['kind']}"
                vals[key] = vals.get(key, 0.0) + float(m.group(3))
        out[worker] = vals
    return out


def cpu_by_process(sup: Supervisor) -> dict[str, float]:
    """CPU seconds (user + system, children included) of every process this benchmark started, by worker name or,
    for the servers, by executable name (postgres backends summed)."""
    names = {pid: name for name, pid in sup.pids().items() if pid}
    out: dict[str, float] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            t = proc.cpu_times()
            label = names.get(proc.pid) or names.get(proc.ppid()) or proc.name()
            out[label] = out.get(label, 0.0) + t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return out


def diff(after: dict[str, Any], before: dict[str, Any], per: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for k, v in after.items():
        if isinstance(v, dict):
            res[k] = diff(v, before.get(k, {}), per)
        else:
            res[k] = (v - before.get(k, 0.0)) / per
    return res


def profile_fetch_prepare(settings: Settings, model: str, blobs: dict[str, bytes], out: Path) -> dict[str, float]:
    """pyinstrument over one processor's fetch + decode (``Processor._fetch_prepare``) of the same photo uploaded
    through the ingest path, for each size class; text reports in ``out``; ms per call."""
    from pyinstrument import Profiler  # lazy: a dev dependency, only for --profile

    proc = Processor(settings, get_model(settings, model))
    ms: dict[str, float] = {}
    try:
        for tag, blob in blobs.items():
            res = Ingestor(settings).ingest_bytes(blob, Metadata(filename=f"profile-{tag}.jpg"))
            with db.connect(settings) as conn:
                row = conn.execute("SELECT payload FROM outbox WHERE event_id=%s",
                                   (f"upl-{res.asset_id[:40]}",)).fetchone()
            assert row is not None
            ev = MediaUploaded.model_validate_json(bytes(row["payload"]))
            variants = {tag: ev, f"{tag}-original": ev.model_copy(update={"working_copy": None})}
            for name, e in variants.items():
                if name.endswith("-original") and ev.working_copy is None:
                    continue
                proc._fetch_prepare(e)  # warm
                prof = Profiler(interval=0.0005)
                t0 = time.perf_counter()
                with prof:
                    for _ in range(5):
                        proc._fetch_prepare(e)
                ms[name] = (time.perf_counter() - t0) / 5 * 1000
                (out / f"processor-{model}-{name}.txt").write_text(prof.output_text(show_all=False))
    finally:
        proc.pool.shutdown()
        proc.triton.close()
    return ms


def run(n: int, sizes: list[int], compare: bool, console: Console, profile: Path | None = None,
        agree: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="argus-suite-") as tmp:
        settings = settings_for_tests(Path(tmp) / "state")
        wanted = default_models(settings)
        settings.models = [m for m in wanted if m not in unavailable_models(settings, wanted)]
        models = expected_models(settings)["image"]  # the models that report a state for every photo
        console.print(f"models: {', '.join(models)}; load average before: {os.getloadavg()}")
        with running_stack(settings, console=console):
            db.migrate(settings)
            kafka.ensure_topics(settings, kafka.all_topics(settings, models))
            ports: dict[str, int] = {}

            def supervisor() -> Supervisor:
                workers = default_workers(settings, api=True)
                if profile is not None:
                    for w, port in zip(workers, free_ports(len(workers)), strict=True):
                        w.extra_env["ARGUS_OPS_PORT"] = str(port)
                        ports[w.name] = port
                        if w.name.startswith("sink-"):  # single-threaded loops: pyinstrument sees their work
                            w.launcher = ["-m", "pyinstrument", "-r", "text", "-o",
                                          str(profile / f"{w.name}-{len(list(profile.glob(w.name + '*')))}.txt"),
                                          "-m", "argus.cli"]
                sv = Supervisor(settings, workers)
                sv.start()
                return sv

            sup = supervisor()
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
                prof: dict[str, Any] = {}

                def measured(key: str, blobs: list[bytes]) -> None:
                    before = (cpu_by_process(sup), scrape(ports)) if profile is not None else None
                    results[key] = upload_run(api, settings, blobs, models, key)
                    if before is not None:
                        prof[key] = {"cpu_s_per_asset": diff(cpu_by_process(sup), before[0], len(blobs)),
                                     "per_asset": diff(scrape(ports), before[1], len(blobs))}

                if agree:
                    # the sample photos themselves are smaller than any copy: they get none, so at the largest size
                    large = photos(len(export_samples(Path(tmp) / "s")), max(sizes), Path(tmp) / "s", salt=900)
                    results["agreement"] = {f"{max(sizes)}mp": agreement(settings, models, large)}
                if profile is not None:  # what the running stack costs with nothing to do (polling, heartbeats)
                    before_idle = cpu_by_process(sup)
                    time.sleep(15)
                    prof["idle_cpu_ms_per_s"] = {k: v * 1000 / 15 for k, v in
                                                 diff(cpu_by_process(sup), before_idle, 1).items()}
                for mp in sizes:
                    console.print(f"[bold]{mp} MP[/bold]: {n} uploads")
                    measured(f"{mp}mp", photos(n, mp, Path(tmp) / "s", salt=mp))
                if profile is not None:
                    one = {f"{mp}mp": photos(1, mp, Path(tmp) / "s", salt=700 + mp)[0]
                           for mp in (min(sizes), max(sizes))}
                    prof["fetch_prepare_ms_ocr_ppocr"] = profile_fetch_prepare(settings, "ocr_ppocr", one, profile)
                if compare:
                    big = max(sizes)
                    for key, what in ((f"{big}mp_no_working_copy", "working_copy"),
                                      (f"{big}mp_full_decode", "scaled_decode")):
                        console.print(f"[bold]{big} MP, processor.{what}=false[/bold]")
                        sup.stop()
                        setattr(settings.processor, what, False)
                        sup = supervisor()
                        wait_ready(api)
                        upload_run(api, settings, photos(2, 1, Path(tmp) / "s", salt=97), models, f"warm-{what}")
                        measured(key, photos(n, big, Path(tmp) / "s", salt=big + 500 + len(key)))
                if profile is not None:
                    results["profile"] = prof
            finally:
                sup.stop()
        results["load_average_after"] = os.getloadavg()
    return results


def print_profile(prof: dict[str, Any], console: Console) -> None:
    cases = [k for k in prof if isinstance(prof[k], dict) and "cpu_s_per_asset" in prof[k]]
    cpu = Table(title="CPU ms per asset, by process")
    cpu.add_column("process")
    for c in cases:
        cpu.add_column(c, justify="right")
    idle = prof.get("idle_cpu_ms_per_s", {})
    cpu.add_column("idle ms/s", justify="right")
    procs = sorted({p for c in cases for p in prof[c]["cpu_s_per_asset"]},
                   key=lambda p: -max(prof[c]["cpu_s_per_asset"].get(p, 0.0) for c in cases))
    for p in procs:
        vals = [prof[c]["cpu_s_per_asset"].get(p, 0.0) * 1000 for c in cases]
        if max(vals) >= 1:
            cpu.add_row(p, *(f"{v:.0f}" for v in vals), f"{idle.get(p, 0.0):.0f}")
    cpu.add_row("total", *(f"{sum(prof[c]['cpu_s_per_asset'].values()) * 1000:.0f}" for c in cases),
                f"{sum(idle.values()):.0f}")
    console.print(cpu)
    stages = Table(title="stage ms per asset (summed over threads) and KB fetched per asset, by worker")
    stages.add_column("worker: stage")
    for c in cases:
        stages.add_column(c, justify="right")
    rows = sorted({(w, k) for c in cases for w, d in prof[c]["per_asset"].items() for k in d})
    for w, k in rows:
        vals = [prof[c]["per_asset"].get(w, {}).get(k, 0.0) for c in cases]
        scale, unit = (1000, "ms") if k.startswith("stage:") else (1 / 1000, "KB")
        if max(vals) * scale >= 0.5:
            stages.add_row(f"{w}: {k.split(':')[1]} ({unit})", *(f"{v * scale:.1f}" for v in vals))
    console.print(stages)
    for k, v in prof.items():
        if k.startswith("fetch_prepare_ms"):
            console.print(f"{k}: " + ", ".join(f"{n} {ms:.0f} ms" for n, ms in v.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="photos per size class")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 12, 24], choices=sorted(SIZES))
    ap.add_argument("--no-compare", action="store_true", help="skip the full-resolution-decode baseline")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-agreement", action="store_true", help="skip the working copy vs original agreement")
    ap.add_argument("--profile", type=Path, help="folder for the per-stage profile (see the module doc)")
    args = ap.parse_args()
    console = Console(width=max(140, Console().width))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()
    r = run(args.n, args.sizes, not args.no_compare, console, args.profile, not args.no_agreement)
    table = Table(title=f"whole default suite through the API ({len(r['models'])} models, {args.n} photos per class)")
    for col in ("case", "MB/photo", "assets/s", "vs 1 MP", "vs bound", "upload->all p50 s", "p95 s"):
        table.add_column(col, justify="right")
    base = r.get(f"{min(args.sizes)}mp", {}).get("assets_s")
    for key in [f"{mp}mp" for mp in args.sizes] + [k for k in r if k.endswith(("full_decode", "no_working_copy"))]:
        v = r[key]
        table.add_row(key, f"{v['mb_per_photo']:.2f}", f"{v['assets_s']:.3f}",
                      f"{v['assets_s'] / base:.2f}" if base else "", f"{v['assets_s'] / r['bound_assets_s']:.2f}",
                      f"{v['p50_s']:.1f}", f"{v['p95_s']:.1f}")
    console.print(table)
    console.print("bound (in-process, prepared inputs): " + ", ".join(
        f"{k} {v:.0f} ms" for k, v in r["costs_ms"].items()) + f" -> {r['bound_assets_s']:.3f} assets/s")
    console.print(f"load average after: {r['load_average_after']}")
    for where, per_model in r.get("agreement", {}).items():
        n_photos = max((int(v["photos"]) for v in per_model.values()), default=0)
        agree = Table(title=f"agreement, {where} ({n_photos} photos): working copy vs original (and, for reference, "
                            "full-resolution vs DCT-scaled decode of the original)")
        for col in ("model", "pair", "top-1 same", "labels Jaccard", "text sim.", "same numbers", "emb. cos mean/worst",
                    "PDQ bits mean/max"):
            agree.add_column(col, justify="right")
        for name, v in per_model.items():
            for pair in ("copy", "full_decode"):
                m = v[pair]
                emb = f"{m['embedding_cos']:.4f}/{m['embedding_cos_worst']:.4f}" if "embedding_cos" in m else ""
                pdq = f"{m['pdq_hamming']:.1f}/{m['pdq_hamming_worst']:.0f}" if "pdq_hamming" in m else ""
                agree.add_row(name, pair, f"{m['top1_same']:.2f}", f"{m['labels_jaccard']:.3f}",
                              f"{m['text_ratio']:.3f}", f"{m['numeric_same']:.2f}", emb, pdq)
        console.print(agree)
        for name, v in per_model.items():
            for d in v["diffs"]:
                console.print(f"  {name} photo {d['photo']}: original {d['original']} | copy {d['copy']}")
    if "profile" in r and args.profile is not None:
        print_profile(r["profile"], console)
        (args.profile / "profile.json").write_text(json.dumps(r["profile"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
