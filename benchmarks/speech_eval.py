"""Speech and moments, measured: WER, language identification, real-time factor, pipeline vs in-process, and
moment-query latency (docs/video.md holds the figures and the machine).

    .venv/bin/python -m benchmarks.speech_eval            # default: short enough for 2 shared cores (~5 min)
    .venv/bin/python -m benchmarks.speech_eval --full     # more sentences/voices/languages, 8 pipeline clips
    .venv/bin/python -m benchmarks.speech_eval --parts wer lid rtf   # no stack: the model in-process only

All speech is synthesized offline by Debian's espeak-ng (robotic voices: a hard case for Whisper base, and no
real recorded speech ships in any registry package we could find), mixed with white noise by numpy.

- wer: word error rate per voice x speed x noise, on sentences of known text (case and punctuation ignored;
  British/American spellings count as errors: "defences" vs "defenses");
- lid: the language Whisper detects on espeak sentences in >= 5 languages (hit rate and mean probability);
- rtf: real-time factor of the embedded config (int8) on a 60 s track, with 1 and 2 CTranslate2 threads;
  per core = wall x threads / audio;
- pipeline: audio seconds per wall second through upload -> Kafka -> processor -> Triton -> sinks, against
  the same clips transcribed in-process by the Triton model's Core (same window cutting);
- moments: p50/p95 latency of speech moment queries at ``--videos`` x ``--segments`` synthetic segments in
  PostgreSQL (``search_moments``, GIN on the 'simple' tsvector).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import re
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
from core import audio, db, kafka
from core.settings import Settings
from models import store
from models.speech_whisper import RATE, spoken, windows
from producers.ingest import Ingestor, Metadata
from retrieval.search import moments as moments_q

SENTENCES = [
    "The minister announced new flood defences for the city of Hamburg on Tuesday.",
    "Police closed the main road after a lorry overturned near the station this morning.",
    "The central bank kept interest rates unchanged and warned that prices would keep rising.",
    "Thousands of people gathered in the square to watch the final match on a giant screen.",
    "Firefighters brought the blaze under control shortly before midnight.",
    "The museum will reopen next spring after three years of renovation work.",
]
VOICES = ["en", "en-us", "en+f3", "en-gb-scotland"]
LID = {  # espeak voice -> (expected Whisper code, sentence)
    "en": ("en", "The weather will be dry and sunny for most of the country tomorrow."),
    "de": ("de", "Die Regierung hat am Dienstag ein neues Gesetz zum Klimaschutz beschlossen."),
    "fr": ("fr", "Le gouvernement a présenté mardi un nouveau projet de loi sur le climat."),
    "es": ("es", "El gobierno presentó el martes una nueva ley para proteger el clima."),
    "it": ("it", "Il governo ha presentato martedì una nuova legge sulla protezione del clima."),
    "pt": ("pt", "O governo apresentou na terça-feira uma nova lei para proteger o clima."),
    "nl": ("nl", "De regering heeft dinsdag een nieuwe wet over klimaatbescherming gepresenteerd."),
    "pl": ("pl", "Rząd przedstawił we wtorek nową ustawę o ochronie klimatu."),
}


def load_core(threads: int) -> Any:
    path = Path(__file__).resolve().parent.parent / "triton_repo" / "speech_whisper" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"bench_speech_{threads}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Core(str(path.parent), {"cpu_threads": str(threads), "compute_type": "int8", "beam_size": "1"})


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(edit distance in words, reference words)."""
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)], len(r)


def noisy(pcm: np.ndarray, snr_db: float | None, seed: int) -> np.ndarray:
    if snr_db is None:
        return pcm
    x = pcm.astype(np.float64)
    voiced = x[np.abs(x) > 200]
    power = float(np.mean(voiced ** 2)) if voiced.size else 1.0
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(x))
    return np.clip(x + noise, -32768, 32767).astype(np.int16)


def pad(pcm: np.ndarray, before: float = 0.5, after: float = 0.5) -> np.ndarray:
    return np.concatenate([np.zeros(int(before * RATE), np.int16), pcm, np.zeros(int(after * RATE), np.int16)])


def say(text: str, voice: str = "en", speed: int = 160) -> np.ndarray:
    pcm = spoken(text, voice, speed)
    if pcm is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng; scripts/bootstrap.sh)")
    return pcm


def part_wer(core: Any, full: bool, console: Console) -> list[dict[str, Any]]:
    sentences = SENTENCES if full else SENTENCES[:3]
    voices = VOICES if full else VOICES[:2]
    speeds = [130, 175, 220] if full else [150, 200]
    noises: list[float | None] = [None, 20.0, 10.0, 5.0] if full else [None, 10.0]
    rows = []
    for voice in voices:
        for speed in speeds:
            clips = [pad(say(s, voice, speed)) for s in sentences]
            for snr in noises:
                err = total = 0
                for k, (ref, clip) in enumerate(zip(sentences, clips, strict=True)):
                    segs, _, _ = core.transcribe(noisy(clip, snr, k))
                    e, n = wer(ref, " ".join(s["t"] for s in segs))
                    err, total = err + e, total + n
                rows.append({"voice": voice, "speed_wpm": speed, "noise": "none" if snr is None else f"{snr:g} dB SNR",
                             "sentences": len(sentences), "words": total, "wer": round(err / total, 3)})
                console.print(rows[-1])
    return rows


def part_lid(core: Any, full: bool, console: Console) -> dict[str, Any]:
    langs = list(LID) if full else ["en", "de", "fr", "es", "it"]
    rows = []
    for voice in langs:
        want, text = LID[voice]
        segs, got, p = core.transcribe(pad(say(text, voice, 160)))
        rows.append({"language": voice, "detected": got or "-", "p": round(p, 2), "ok": got == want,
                     "text": " ".join(s["t"] for s in segs)[:70]})
        console.print(rows[-1])
    return {"rows": rows, "accuracy": round(sum(r["ok"] for r in rows) / len(rows), 3)}


def news_track(seconds: float, seed: int = 0) -> np.ndarray:
    """Sentences with 1-2 s pauses, ``seconds`` long (speech most of the time, like a news item)."""
    rng = np.random.default_rng(seed)
    parts, have = [], 0
    clips = [say(s) for s in SENTENCES]
    while have < seconds * RATE:
        clip = clips[int(rng.integers(len(clips)))]
        gap = np.zeros(int(rng.uniform(1.0, 2.0) * RATE), np.int16)
        parts += [clip, gap]
        have += len(clip) + len(gap)
    return np.concatenate(parts)[: int(seconds * RATE)]


def part_rtf(console: Console) -> list[dict[str, Any]]:
    track = news_track(60)
    rows = []
    for threads in (1, 2):
        core = load_core(threads)
        core.transcribe(track[: 5 * RATE])  # warm-up
        t0 = time.perf_counter()
        core.transcribe(track)
        wall = time.perf_counter() - t0
        rows.append({"threads": threads, "audio_s": 60, "wall_s": round(wall, 2), "rtf": round(wall / 60, 3),
                     "rtf_per_core": round(wall * threads / 60, 3)})
        console.print(rows[-1])
    return rows


def wav_bytes(pcm: np.ndarray) -> bytes:
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def part_pipeline(settings: Settings, n: int, seconds: float, console: Console) -> dict[str, Any]:
    clips = [news_track(seconds, seed=i) for i in range(n)]
    audio_s = n * seconds
    core = load_core(2)  # the embedded config's threads
    t0 = time.perf_counter()
    for pcm in clips:
        track = audio.decode(wav_bytes(pcm), max_ms=7_200_000).pcm
        for a, b in windows(len(track), track):
            core.transcribe(track[a:b])
    in_process = audio_s / (time.perf_counter() - t0)
    del core
    console.print(f"in-process: {in_process:.2f} audio s per s")
    ing = Ingestor(settings)
    ids = [ing.ingest_bytes(wav_bytes(p), Metadata(filename=f"clip{i}.wav")).asset_id for i, p in enumerate(clips)]
    workers = [Worker("relay", ["run", "relay"]), Worker("sink-postgres", ["run", "sink", "postgres"]),
               Worker("sink-search", ["run", "sink", "search"]),
               Worker("processor-speech_whisper", ["run", "processor", "speech_whisper"])]
    sup = Supervisor(settings, workers)
    t0 = time.perf_counter()
    sup.start()
    try:
        final = pipeline.wait_until_done(settings, ids, "speech_whisper", timeout=3600, poll_s=0.5)
        wall = time.perf_counter() - t0
        assert final.done and final.failed == 0, f"{final}; dead workers: {sup.dead()}"
    finally:
        sup.stop()
    # wall time from the processor's start (Kafka join, Triton client) to the last transcript applied: with a few
    # clips they all arrive in one consumer batch, so a first-to-last "steady" rate would measure nothing
    out = {"clips": n, "clip_s": seconds, "in_process_audio_s_per_s": round(in_process, 2),
           "pipeline_wall_audio_s_per_s": round(audio_s / wall, 2), "pipeline_wall_s": round(wall, 1),
           "ratio_wall_vs_in_process": round(audio_s / wall / in_process, 3)}
    console.print(out)
    return out


def part_moments(settings: Settings, videos: int, segments: int, console: Console) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    vocab = sorted({w for s in SENTENCES + [t for _, t in LID.values()] for w in words(s)})
    vocab += [f"w{i}" for i in range(5000)]  # a long tail of rarer words
    zipf = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    zipf /= zipf.sum()
    t0 = time.perf_counter()
    with db.connect(settings) as conn:
        conn.execute("TRUNCATE search_moments")
        with conn.cursor().copy("COPY search_moments (asset_id, model, model_version, seq, start_ms, end_ms, text, "
                                "language, produced_at, annotation_id) FROM STDIN") as cp:
            for v in range(videos):
                aid = f"{v:064x}"
                picks = rng.choice(len(vocab), size=(segments, 12), p=zipf)
                for s in range(segments):
                    text = " ".join(vocab[i] for i in picks[s])
                    cp.write_row((aid, "speech_whisper", "bench", s, s * 5000, s * 5000 + 4000, text, "en",
                                  "2026-01-01T00:00:00Z", "bench"))
        conn.execute("ANALYZE search_moments")
        conn.commit()
    load_s = time.perf_counter() - t0
    console.print(f"loaded {videos * segments} segments in {load_s:.1f}s")
    with db.connect(settings) as conn:  # queries that match: words and a phrase taken from stored segments
        sample = [str(r["text"]).split() for r in conn.execute(
            "SELECT text FROM search_moments WHERE asset_id = ANY(%s) AND seq = 3",
            ([f"{v:064x}" for v in (17, 4242, 9001)],))]
    queries = {"one common word": "minister", "one rare word": "w4321",
               "two words": f"{sample[0][0]} {sample[0][5]}", "phrase (2 words)": f'"{sample[1][2]} {sample[1][3]}"',
               "phrase (3 words)": f'"{" ".join(sample[2][4:7])}"', "per asset (3)": "police station"}
    lat: dict[str, Any] = {}
    with db.connect(settings) as conn:
        for name, q in queries.items():
            times, hits = [], 0
            for _ in range(30):
                t = time.perf_counter()
                found = moments_q.search_speech(conn, q, limit=20, per_asset=3 if "per asset" in name else None)
                times.append((time.perf_counter() - t) * 1000)
                hits = len(found)
            times.sort()
            lat[name] = {"q": q, "p50_ms": round(times[len(times) // 2], 1),
                         "p95_ms": round(times[int(len(times) * 0.95) - 1], 1), "hits": hits}
            console.print(name, lat[name])
        matches = {name: int(db.scalar(conn, "SELECT count(*) FROM search_moments WHERE tsv @@ "
                                             "websearch_to_tsquery('simple', %s)", (q,)))
                   for name, q in queries.items()}
    for name in lat:
        lat[name]["matching_segments"] = matches[name]
    return {"videos": videos, "segments_per_video": segments, "load_s": round(load_s, 1), "latency": lat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="all voices, speeds, noises, 8 languages, 8 clips")
    ap.add_argument("--parts", nargs="*", default=["wer", "lid", "rtf", "pipeline", "moments"])
    ap.add_argument("--videos", type=int, default=10_000)
    ap.add_argument("--segments", type=int, default=100)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    console = Console()
    results: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"}
    store.pull(Settings(), "speech_whisper")
    if {"wer", "lid"} & set(args.parts):
        core = load_core(2)
        if "wer" in args.parts:
            results["wer"] = part_wer(core, args.full, console)
        if "lid" in args.parts:
            results["lid"] = part_lid(core, args.full, console)
        del core
    if "rtf" in args.parts:
        results["rtf"] = part_rtf(console)
    if {"pipeline", "moments"} & set(args.parts):
        with tempfile.TemporaryDirectory(prefix="argus-bench-speech-") as tmp:
            settings = settings_for_tests(Path(tmp) / "state")
            settings.models = ["speech_whisper"]
            with running_stack(settings, console=console):
                db.migrate(settings)
                kafka.ensure_topics(settings, kafka.all_topics(settings, settings.models))
                if "pipeline" in args.parts:
                    results["pipeline"] = part_pipeline(settings, 8 if args.full else 4, 45.0, console)
                if "moments" in args.parts:
                    results["moments"] = part_moments(settings, args.videos, args.segments, console)
    print_tables(results, console)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_tables(results: dict[str, Any], console: Console) -> None:
    console.print(f"machine: {results['machine']}")
    if "wer" in results:
        t = Table("voice", "speed (wpm)", "noise", "words", "WER", title="Word error rate (espeak-ng speech)")
        for r in results["wer"]:
            t.add_row(r["voice"], str(r["speed_wpm"]), r["noise"], str(r["words"]), f"{r['wer']:.3f}")
        console.print(t)
    if "lid" in results:
        t = Table("voice", "detected", "p", "ok", "transcript", title=f"Language ID (accuracy "
                                                                      f"{results['lid']['accuracy']:.2f})")
        for r in results["lid"]["rows"]:
            t.add_row(r["language"], r["detected"], f"{r['p']:.2f}", "yes" if r["ok"] else "no", r["text"])
        console.print(t)
    if "rtf" in results:
        t = Table("threads", "audio s", "wall s", "RTF", "RTF per core", title="Real-time factor (int8, CPU)")
        for r in results["rtf"]:
            t.add_row(str(r["threads"]), str(r["audio_s"]), str(r["wall_s"]), str(r["rtf"]), str(r["rtf_per_core"]))
        console.print(t)
    if "pipeline" in results:
        console.print("pipeline vs in-process:", results["pipeline"])
    if "moments" in results:
        m = results["moments"]
        t = Table("query", "q", "matching segments", "p50 ms", "p95 ms",
                  title=f"Moment queries at {m['videos']} videos x {m['segments_per_video']} segments")
        for name, r in m["latency"].items():
            t.add_row(name, r["q"], str(r["matching_segments"]), str(r["p50_ms"]), str(r["p95_ms"]))
        console.print(t)


if __name__ == "__main__":
    main()
