"""Search latency and kNN recall at archive scale on the embedded PostgreSQL backend.

    .venv/bin/python -m benchmarks.search [--n 100000] [--dim 512] [--queries 200]

Starts a private embedded PostgreSQL (temp state dir, free port), bulk-loads ``--n`` synthetic search
documents with COPY (ImageNet label names with a Zipf distribution, news-like titles and descriptions,
OCR text on 10%, face counts, 1% flagged nsfw, 10% videos, 2 years of upload dates) and ``--n`` clustered,
L2-normalised ``--dim``-d vectors, builds the per-version HNSW index (m=16, ef_construction=64) exactly as
the search sink would, then times the real ``PostgresSearchIndex`` query methods (psycopg + pool included):

  text             full text, 20 hits with highlights, no facets
  text+facets      full text + filters (image, date range) + 6 exact facets (labels, media type, source,
                   collection, flags, face-count buckets)
  facets only      filters + 6 facets over everything matching (no text)
  kNN              k=10 on the active version's HNSW index
  filtered kNN     k=10 with media_type=image + source=wire (~27%) and with one common label (~2-5%)

and kNN recall@10 against exact search (numpy over the same vectors; filtered: over the filtered subset).
Prints a table and writes benchmarks/results/search.json. Not part of the test suite (minutes of CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql
from rich.console import Console
from rich.table import Table

from argus.stack.manager import EmbeddedStack
from argus.stack.ports import settings_for_tests
from core import db
from core.settings import Settings
from retrieval.search.interface import SearchQuery
from retrieval.search.postgres_backend import PostgresSearchIndex
from sinks.search.postgres_backend import _index_name, vector_table

MODEL, VERSION = "bench_clip", "v1"
ADJ = ["burning", "empty", "crowded", "flooded", "historic", "new", "old", "quiet", "damaged", "famous", "local",
       "national", "small", "giant", "red", "night", "winter", "summer", "rural", "urban"]
PLACES = ["Paris", "Berlin", "Athens", "Lagos", "Lima", "Osaka", "Toronto", "Nairobi", "Madrid", "Oslo", "Delhi",
          "Cairo", "Quito", "Hanoi", "Sydney", "Chicago"]
EVENTS = ["protest", "election", "storm", "match", "parade", "summit", "festival", "trial", "launch", "strike",
          "concert", "rescue", "ceremony", "fire", "market", "race"]
SOURCES = ["wire:afp", "wire:reuters", "upload", "watch:photodesk", "feed:agency"]
COLLECTIONS = ["politics", "sports", "culture", "weather", "business", None]


def imagenet_labels() -> list[str]:
    path = Path(__file__).resolve().parent.parent / "triton_repo" / "efficientnet_lite0" / "labels.txt"
    return [ln.split(",")[0].strip().lower() for ln in path.read_text().splitlines() if ln.strip()]


def make_docs(n: int, rng: np.random.Generator) -> list[tuple[Any, ...]]:
    labels = imagenet_labels()
    zipf = 1.0 / np.arange(1, len(labels) + 1) ** 1.1
    zipf /= zipf.sum()
    lab_idx = rng.choice(len(labels), size=(n, 5), p=zipf)  # sampled at once: per-row sampling is slow
    nlab = rng.integers(1, 6, size=n)
    faces = np.minimum(rng.geometric(0.55, size=n) - 1, 40)
    videos = rng.random(n) < 0.1
    nsfw = rng.random(n) < 0.01
    ocr = rng.random(n) < 0.1
    minutes = rng.integers(0, 2 * 365 * 24 * 60, size=n)
    pick = rng.integers(0, 1 << 30, size=(n, 8))
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        p = pick[i]
        labs = sorted({labels[j] for j in lab_idx[i, : nlab[i]]})
        if faces[i]:
            labs.append("face")
        media = "video" if videos[i] else "image"
        event, place = EVENTS[p[0] % len(EVENTS)], PLACES[p[1] % len(PLACES)]
        title = f"{ADJ[p[2] % len(ADJ)].capitalize()} {labs[0]} at the {event} in {place}"
        desc = f"{ADJ[p[3] % len(ADJ)].capitalize()} scene: {', '.join(labs)} near {PLACES[p[4] % len(PLACES)]}."
        text = f"{EVENTS[p[5] % len(EVENTS)].upper()} {PLACES[p[6] % len(PLACES)].upper()} {p[7] % 99}" \
            if ocr[i] else None
        numeric = {"face_count": float(faces[i])} | ({"nsfw": 0.93} if nsfw[i] else {})
        rows.append((f"{i:064x}", media, "image/jpeg" if media == "image" else "video/mp4", f"IMG_{i:07d}.jpg",
                     title, desc, SOURCES[p[0] % len(SOURCES)], COLLECTIONS[p[1] % len(COLLECTIONS)],
                     t0 + timedelta(minutes=int(minutes[i])), labs, " ".join(labs), text,
                     json.dumps(numeric), json.dumps({MODEL: {"version": VERSION, "labels": labs}}),
                     [MODEL, f"{MODEL}@{VERSION}"]))
    return rows


def make_vectors(n: int, dim: int, rng: np.random.Generator, latent: int = 32,
                 centers: np.ndarray | None = None, proj: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image-embedding-like vectors: 1,000 topics in a 32-d latent space, mapped linearly into ``dim``
    dimensions plus a little isotropic noise, L2-normalised. Real embeddings concentrate near a
    low-dimensional manifold; i.i.d. noise in all 512 dimensions would make every neighbour equally
    far (no ANN index finds a meaningful top-10 there, see notes/backends.md's random set)."""
    if centers is None:
        centers = rng.normal(size=(1000, latent)).astype(np.float32)
    if proj is None:
        proj = (rng.normal(size=(latent, dim)) / np.sqrt(latent)).astype(np.float32)
    z = centers[rng.integers(0, len(centers), size=n)] + 0.35 * rng.normal(size=(n, latent)).astype(np.float32)
    x = z @ proj + 0.05 * rng.normal(size=(n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), centers, proj


def load(s: Settings, docs: list[tuple[Any, ...]], vecs: np.ndarray, console: Console) -> dict[str, float]:
    timings: dict[str, float] = {}
    dim = vecs.shape[1]
    t = time.perf_counter()
    with db.connect(s) as conn, conn.transaction(), conn.cursor().copy(
            """COPY search_docs (asset_id, media_type, content_type, filename, title, description, source,
                                 collection, uploaded_at, labels, labels_text, text_extra, numeric, models,
                                 model_keys) FROM STDIN""") as cp:
        for r in docs:
            cp.write_row(r)
    timings["copy_docs_s"] = time.perf_counter() - t
    console.print(f"COPY {len(docs)} docs (tsvector computed): {timings['copy_docs_s']:.1f}s")
    t = time.perf_counter()
    tbl = vector_table(MODEL)
    with db.connect(s) as conn, conn.transaction():
        conn.execute(sql.SQL("""CREATE TABLE {t} (asset_id text NOT NULL, model_version text NOT NULL,
                                embedding vector NOT NULL, produced_at timestamptz, annotation_id text,
                                keyframe_ms integer, PRIMARY KEY (asset_id, model_version))""").format(t=tbl))
        copy_sql = sql.SQL("COPY {t} (asset_id, model_version, embedding) FROM STDIN (FORMAT BINARY)").format(t=tbl)
        with conn.cursor().copy(copy_sql) as cp:
            cp.set_types(["text", "text", "vector"])  # pgvector's binary format: no float text round trip
            for i, v in enumerate(vecs):
                cp.write_row((docs[i][0], VERSION, v))
        conn.execute("INSERT INTO search_vector_meta (model, model_version, dim) VALUES (%s,%s,%s)",
                     (MODEL, VERSION, dim))
        conn.execute("INSERT INTO search_model_versions (model, active_version) VALUES (%s,%s)", (MODEL, VERSION))
    timings["copy_vectors_s"] = time.perf_counter() - t
    console.print(f"COPY {len(vecs)} x {dim}-d vectors: {timings['copy_vectors_s']:.1f}s")
    t = time.perf_counter()
    with db.connect(s, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        conn.execute(sql.SQL(
            "CREATE INDEX {i} ON {t} USING hnsw ((embedding::vector({d})) vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64) WHERE model_version = {v}").format(
            i=sql.Identifier(_index_name(MODEL, VERSION)), t=tbl, d=sql.Literal(dim), v=sql.Literal(VERSION)))
        conn.execute("VACUUM ANALYZE search_docs")
        conn.execute(sql.SQL("VACUUM ANALYZE {t}").format(t=tbl))
    timings["hnsw_build_s"] = time.perf_counter() - t
    console.print(f"HNSW build (m=16, ef_construction=64): {timings['hnsw_build_s']:.1f}s")
    return timings


def timeit(fn: Callable[[Any], Any], args: list[Any], warmup: int = 10) -> tuple[list[float], list[Any]]:
    for a in args[:warmup]:
        fn(a)
    lat, out = [], []
    for a in args:
        t = time.perf_counter()
        out.append(fn(a))
        lat.append((time.perf_counter() - t) * 1000)
    return lat, out


def pct(lat: list[float], p: float) -> float:
    return float(np.percentile(lat, p))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef", type=int, nargs="*", default=[40, 100])
    args = ap.parse_args()
    console = Console()
    rng = np.random.default_rng(42)
    results: dict[str, Any] = {"n": args.n, "dim": args.dim, "queries": args.queries,
                               "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, "
                                          f"{platform.platform()}"}
    with tempfile.TemporaryDirectory(prefix="argus-bench-search-") as tmp:
        s = settings_for_tests(Path(tmp))
        stack = EmbeddedStack(s)
        stack.up(["postgres"])
        try:
            db.migrate(s)
            t = time.perf_counter()
            docs = make_docs(args.n, rng)
            vecs, centers, proj = make_vectors(args.n, args.dim, rng)
            queries, _, _ = make_vectors(args.queries, args.dim, rng, centers=centers, proj=proj)
            console.print(f"generated {args.n} docs + vectors in {time.perf_counter() - t:.1f}s")
            results["load"] = load(s, docs, vecs, console)
            index = PostgresSearchIndex(s)
            results["loadavg_before_queries"] = list(__import__("os").getloadavg())
            results["latency_ms"], results["recall_at_10"] = run_queries(index, s, docs, vecs, queries, args, rng,
                                                                         console)
            results["loadavg_after_queries"] = list(__import__("os").getloadavg())
        finally:
            stack.down()
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "search.json").write_text(json.dumps(results, indent=2))
    console.print(f"wrote {out / 'search.json'}")


def run_queries(index: PostgresSearchIndex, s: Settings, docs: list[tuple[Any, ...]], vecs: np.ndarray,
                qv: np.ndarray, args: argparse.Namespace, rng: np.random.Generator,
                console: Console) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    nq = args.queries
    # what a newsroom types: a subject (label), an event, a place, or two of them
    subjects = [lb for d in docs[:3000] for lb in d[9] if lb != "face"]
    vocab = [subjects, EVENTS, [p.lower() for p in PLACES], ADJ]
    texts = []
    for _ in range(nq):
        a, b = rng.choice(4, size=2, replace=False)
        one = str(rng.choice(vocab[a]))
        texts.append(one if rng.random() < 0.5 else f"{one} {rng.choice(vocab[b])}")
    common = [lb for lb, _ in sorted(
        {lb: sum(1 for d in docs[:5000] if lb in d[9]) for d in docs[:200] for lb in d[9]}.items(),
        key=lambda kv: -kv[1])[1:20]]
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    all_facets = ("labels", "media_type", "source", "collection", "flags", "face_count")
    media = np.array([d[1] for d in docs])
    source = np.array([d[6] for d in docs])
    ids = np.array([d[0] for d in docs])

    def fq(i: int) -> SearchQuery:
        start = t0 + timedelta(days=int(rng.integers(0, 600)))
        return SearchQuery(text=texts[i], media_type="image", uploaded_from=start,
                           uploaded_to=start + timedelta(days=180), flags=(("nsfw", "exclude"),), facets=all_facets)

    filtered_q = SearchQuery(media_type="image", source="wire:afp")
    lat: dict[str, dict[str, float]] = {}
    runs: list[tuple[str, Callable[[Any], Any], list[Any]]] = [
        ("text", lambda i: index.search(SearchQuery(text=texts[i], facets=())), list(range(nq))),
        ("text + filters + facets", lambda q: index.search(q), [fq(i) for i in range(nq)]),
        ("filters + facets, no text", lambda i: index.search(SearchQuery(
            labels=(common[i % len(common)],), facets=all_facets)), list(range(nq))),
        ("kNN k=10", lambda i: index.knn(MODEL, qv[i], 10), list(range(nq))),
        ("filtered kNN (image, source)", lambda i: index.knn(MODEL, qv[i], 10, filtered_q), list(range(nq))),
        ("filtered kNN (one label)", lambda i: index.knn(MODEL, qv[i], 10, SearchQuery(
            labels=(common[i % len(common)],))), list(range(nq))),
    ]
    outs: dict[str, list[Any]] = {}
    for name, fn, a in runs:
        ms, outs[name] = timeit(fn, a)
        lat[name] = {"p50": round(pct(ms, 50), 2), "p95": round(pct(ms, 95), 2), "mean": round(float(np.mean(ms)), 2)}
        extra = ""
        if outs[name] and hasattr(outs[name][0], "total"):
            extra = f", mean total {np.mean([r.total for r in outs[name]]):.0f}"
        console.print(f"{name}: p50 {lat[name]['p50']} ms, p95 {lat[name]['p95']} ms{extra}")
    # recall@10 against exact search
    recall: dict[str, float] = {}
    exact_all = np.argsort(-(qv @ vecs.T), axis=1)[:, :10]
    recall["kNN"] = float(np.mean([len({h.asset_id for h in outs["kNN k=10"][i]} & set(ids[exact_all[i]])) / 10
                                   for i in range(nq)]))
    mask = (media == "image") & (source == "wire:afp")
    sub = np.where(mask)[0]
    exact_f = sub[np.argsort(-(qv @ vecs[sub].T), axis=1)[:, :10]]
    recall["filtered kNN (image, source)"] = float(np.mean([
        len({h.asset_id for h in outs["filtered kNN (image, source)"][i]} & set(ids[exact_f[i]])) / 10
        for i in range(nq)]))
    lab_recall = []
    for i in range(nq):
        lb = common[i % len(common)]
        if i < 40:  # the label scan is slow in Python; 40 queries are plenty for a recall estimate
            members = np.array([j for j, d in enumerate(docs) if lb in d[9]])
            exact = members[np.argsort(-(vecs[members] @ qv[i]))[:10]]
            lab_recall.append(len({h.asset_id for h in outs["filtered kNN (one label)"][i]} & set(ids[exact])) / 10)
    recall["filtered kNN (one label)"] = float(np.mean(lab_recall))
    for ef in args.ef:
        s.search.hnsw_ef_search = ef
        res = [index.knn(MODEL, qv[i], 10) for i in range(nq)]
        recall[f"kNN ef_search={ef}"] = float(np.mean([len({h.asset_id for h in res[i]} & set(ids[exact_all[i]])) / 10
                                                       for i in range(nq)]))
        ms, _ = timeit(lambda i: index.knn(MODEL, qv[i], 10), list(range(nq)))
        lat[f"kNN k=10 (ef_search={ef})"] = {"p50": round(pct(ms, 50), 2), "p95": round(pct(ms, 95), 2),
                                              "mean": round(float(np.mean(ms)), 2)}
    table = Table("query", "p50 ms", "p95 ms", "recall@10", title=f"search at {len(docs)} docs, {vecs.shape[1]}-d")
    for name, v in lat.items():
        key = {"kNN k=10": "kNN"}.get(name, name.replace("kNN k=10 (", "kNN ").replace(")", "")
                                      if "ef_search" in name else name)
        r = recall.get(key)
        table.add_row(name, f"{v['p50']:.1f}", f"{v['p95']:.1f}", f"{r:.3f}" if r is not None else "")
    console.print(table)
    return lat, recall


if __name__ == "__main__":
    main()
