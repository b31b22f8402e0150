"""speech_whisper: windows, payload decode and the asset transcript (no servers); Whisper in-process on espeak-ng
speech (the same Core Triton runs); then verify through Triton and one pipeline run with the bad inputs of issue 14,
the transcript in search (a spoken phrase found at its time), subtitles, and keyframe-level similarity.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from argus import pipeline
from core import audio
from core.settings import Settings
from models import store
from models.speech_whisper import RATE, WINDOW, SpeechWhisper, split_segment, windows
from models.text_embed import pack_vector, unpack_vector
from retrieval.search import moments as moments_q
from schemas.events import Transcript
from tests.support import speech as sp
from tests.support.modelrun import annotations, model_run
from tests.support.models import load_core, photo
from tests.support.stack import load_models

PHRASE = "the harbour bridge will close for repairs"
LINE_1 = "Good evening. Here is the news from the city council."
LINE_2 = "The harbour bridge will close for repairs next week."
PARAPHRASE = "port crossing shut for maintenance soon"  # LINE_2's meaning, none of its content words
AT_1, AT_2 = 1.0, 8.0  # seconds where the two lines start in the test video


# ------------------------------------------------------------------------------ no servers
def test_windows_cover_everything_and_cut_in_pauses() -> None:
    rng = np.random.default_rng(0)
    pcm = rng.integers(-3000, 3000, 150 * RATE).astype(np.int16)
    pcm[57 * RATE:57 * RATE + RATE // 2] = 0  # a pause inside the first window's search zone
    spans = windows(len(pcm), pcm)
    assert spans[0][0] == 0 and spans[-1][1] == len(pcm)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(0 < e - s <= WINDOW for s, e in spans)
    assert 57 * RATE <= spans[0][1] <= 57 * RATE + RATE // 2  # cut in the pause, not at 60 s
    assert windows(0) == []


def _outputs(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    def col(key: str, dtype: Any) -> np.ndarray:
        return np.array([[r[key]] for r in rows], dtype=dtype)

    return {"SEGMENTS": col("segs", np.object_), "LANGUAGE_OUT": col("lang", np.object_),
            "LANGUAGE_P": col("p", np.float32), "OFFSET_MS": col("offset", np.int64),
            "DURATION_MS": col("dur", np.int64), "DECODED_MS": col("dur", np.int64),
            "SKIPPED_MS": col("skip", np.int64), "STATUS": col("status", np.object_),
            "NOTE": col("note", np.object_), "LENGTH": col("length", np.int32),
            "SOURCE": np.array([[8000, 6] for _ in rows], np.int64)}


def _row(offset: int, segs: list[dict[str, Any]], lang: str = "en", status: bytes = b"ok", skip: int = 0) -> dict:
    return {"segs": json.dumps(segs).encode(), "lang": lang.encode(), "p": 0.9, "offset": offset, "dur": 120_000,
            "skip": skip, "status": status, "note": b"", "length": 60 * RATE}


def test_payloads_shift_times_and_the_summary_merges_windows(stack_settings: Settings) -> None:
    model = SpeechWhisper(stack_settings)
    seg = {"s": 1000, "e": 2500, "t": "Hello there.", "lp": -0.2, "nsp": 0.01,
           "w": [[1000, 1400, "Hello", 0.9], [1400, 2500, "there.", 0.8]]}
    chunks = model.to_payloads(_outputs([_row(0, [seg]), _row(60_000, [seg], lang="de")]), 2)
    assert all(isinstance(c, Transcript) and c.scope == "chunk" for c in chunks)
    assert chunks[1].segments[0].start_ms == 61_000 and chunks[1].segments[0].words[1].end_ms == 62_500
    assert chunks[0].search_fields().text == ""  # chunks add nothing to search: the asset transcript does
    asset = model.summarize([(0, chunks[0]), (60_000, chunks[1])])
    assert isinstance(asset, Transcript) and asset.scope == "asset" and asset.status == "ok"
    assert [s.start_ms for s in asset.segments] == [1000, 61_000] and asset.source_rate == 8000
    assert asset.search_fields().labels[0] == "speech" and "Hello there." in asset.search_fields().text
    silent = model.summarize([(0, model.to_payloads(_outputs([_row(0, [])]), 1)[0])])
    assert isinstance(silent, Transcript) and silent.status == "silent" and silent.search_fields().labels == []
    capped = model.summarize([(0, model.to_payloads(_outputs([_row(0, [seg], skip=30_000)]), 1)[0])])
    assert isinstance(capped, Transcript) and capped.status == "capped" and "30 s" in (capped.note or "")
    none = model.summarize([(0, model.to_payloads(_outputs([_row(0, [], lang="", status=b"no_audio")]), 1)[0])])
    assert isinstance(none, Transcript) and none.status == "no_audio"


def test_segment_vectors_pack_small_and_keep_the_cosine() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    packed = [pack_vector(x) for x in v]
    assert max(len(p) for p in packed) == 520  # base64 of 4 + 384 bytes (JSON floats: ~8 kB)
    back = np.stack([unpack_vector(p) for p in packed])
    cos = (v * back).sum(axis=1) / np.linalg.norm(back, axis=1)
    assert float(cos.min()) > 0.999


def test_subtitles() -> None:
    segs = [moments_q.Segment(1500, 3200, "Hello <world> --> now", "en"),
            moments_q.Segment(3_723_004, 3_725_000, "later", "en")]
    vtt = moments_q.to_webvtt(segs)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:01.500 --> 00:00:03.200\nHello &lt;world&gt; -&gt; now\n")
    assert "01:02:03.004 --> 01:02:05.000" in vtt
    srt = moments_q.to_srt(segs)
    assert srt.startswith("1\n00:00:01,500 --> 00:00:03,200\nHello <world> -> now\n\n2\n01:02:03,004")
    assert moments_q.clock(42_000) == "00:42" and moments_q.clock(3_723_000) == "1:02:03"


def test_audio_decoding_of_odd_sources() -> None:
    """8 kHz telephone audio, 5.1 audio and a damaged stream inside a good video, through PyAV."""
    pcm = sp.track([(0.5, (np.sin(np.arange(RATE) * 0.2) * 8000).astype(np.int16))], 3)
    shots = [(photo("astronaut"), 3.0)]
    tel = audio.decode(sp.wav(pcm, 8000), max_ms=60_000)
    assert (tel.status, tel.source_rate, abs(tel.decoded_ms - 3000) < 50) == ("ok", 8000, True)
    surround = audio.decode(sp.speech_video(shots, pcm, rate=48000, channels=6), max_ms=60_000)
    assert surround.status == "ok" and surround.source_channels == 6 and np.abs(surround.pcm).max() > 2000
    broken = audio.decode(sp.speech_video(shots, pcm, corrupt_audio=True), max_ms=60_000)
    assert broken.status == "undecodable" and broken.error
    capped = audio.decode(sp.wav(np.zeros(40 * RATE, np.int16)), max_ms=10_000)
    assert capped.decoded_ms == 10_000 and capped.skipped_ms == 30_000
    assert audio.decode(sp.speech_video(shots, None), max_ms=60_000).status == "no_audio"


def test_whisper_in_process_times_words_within_a_second() -> None:
    core = load_core("speech_whisper")
    pcm = sp.track([(AT_1, sp.say(LINE_1)), (AT_2, sp.say(LINE_2))], 14)
    raw, lang, _ = core.transcribe(pcm)
    assert lang == "en"
    segs = [part for s in raw for part in split_segment(s, 0, lang)]  # one segment per sentence, timed by words
    text = " ".join(s.text for s in segs).lower()
    assert "harbour" in text or "harbor" in text, text
    first, second = segs[0], next(s for s in segs if "bridge" in s.text.lower())
    assert abs(first.start_ms / 1000 - AT_1) < 1.0 and abs(second.start_ms / 1000 - AT_2) < 1.0, segs
    assert core.transcribe(np.zeros(5 * RATE, np.int16)) == ([], "", 0.0)


# ------------------------------------------------------------------------------ Triton + the pipeline
@pytest.mark.integration
def test_verify_pipeline_bad_inputs_search_and_moments(stack_settings: Settings) -> None:
    sp.need_espeak()
    load_models(stack_settings, ["speech_whisper", "efficientnet_lite0"])
    report = store.verify(stack_settings, names=["speech_whisper"])
    assert report.ok, str(report)
    speech = sp.track([(AT_1, sp.say(LINE_1)), (AT_2, sp.say(LINE_2))], 14)
    media = {
        # news clip: astronaut then coffee on screen, two spoken lines
        "news": (sp.speech_video([(photo("astronaut"), 7.0), (photo("coffee"), 7.0)], speech), "news.mp4"),
        # no audio stream; coffee shown from 4 s (the keyframe-level similar search must find it there)
        "mute": (sp.speech_video([(photo("chelsea"), 4.0), (photo("coffee"), 4.0)], None), "mute.mp4"),
        "phone": (sp.wav(speech, 8000), "phone.wav"),  # 8 kHz telephone audio, audio only
        "surround": (sp.speech_video([(photo("rocket"), 14.0)], speech, rate=48000, channels=6), "surround.mp4"),
        "broken": (sp.speech_video([(photo("astronaut"), 4.0)], speech[:4 * RATE], corrupt_audio=True),
                   "broken.mp4"),
        "silent": (sp.wav(np.zeros(5 * RATE, np.int16)), "silent.wav"),
        "long": (sp.wav(np.concatenate([speech, speech, speech])), "long.wav"),  # 42 s, capped at 30 s
    }

    def configure(s: Settings) -> None:
        s.speech.max_minutes = 0.5
        s.models = ["speech_whisper", "efficientnet_lite0"]  # the image model runs too (waited for below)

    with model_run(stack_settings, "t_speech_run", ["speech_whisper"], media, configure=configure) as (s, ids):
        videos = [ids[k] for k in ("news", "mute", "surround", "broken")]  # audio files have no images
        done = pipeline.wait_until_done(s, videos, "efficientnet_lite0", timeout=300)
        assert done.done and done.failed == 0, done
        def transcript(key: str) -> dict[str, Any]:
            rows = annotations(s, ids[key], "speech_whisper")
            assert rows[0]["keyframe_ms"] is None
            return dict(rows[0]["payload"])

        news = transcript("news")
        assert news["status"] == "ok" and news["language"] == "en", news
        for key in ("phone", "surround"):  # 8 kHz and 5.1 sources: the same words
            t = transcript(key)
            assert t["status"] == "ok" and "bridge" in " ".join(x["text"] for x in t["segments"]).lower(), t
        assert transcript("mute")["status"] == "no_audio"
        assert transcript("silent")["status"] == "silent"
        broken = transcript("broken")
        assert broken["status"] == "undecodable" and "cannot be decoded" in broken["note"]
        assert annotations(s, ids["broken"], "efficientnet_lite0"), "the broken-audio video's images are annotated"
        long = transcript("long")
        assert long["status"] == "capped" and long["skipped_ms"] >= 11_000 and long["processed_ms"] == 30_000

        client = TestClient(create_app(s))
        headers = {"X-API-Key": "dev-key"}
        # a spoken phrase finds the moment (within a second of when it is said) in each asset that says it
        found = client.get("/v1/moments", params={"q": f'"{PHRASE}"'}, headers=headers).json()["moments"]
        by_asset = {m["asset_id"]: m for m in found}
        assert ids["news"] in by_asset, found
        hit = by_asset[ids["news"]]
        assert abs(hit["start_ms"] / 1000 - AT_2) < 1.0 and "[[bridge]]" in hit["highlight"].lower(), hit
        assert hit["seek_url"].endswith(f"#t={hit['start_ms'] / 1000:g}")
        assert hit["at"] == moments_q.clock(hit["start_ms"])
        assert ids["silent"] not in by_asset and ids["mute"] not in by_asset
        # meaning search over segments: a paraphrase sharing no content word with LINE_2 finds it, at its time
        sem = client.get("/v1/moments/semantic", params={"text": PARAPHRASE, "per_asset": 1},
                         headers=headers).json()
        by_asset = {m["asset_id"]: m for m in sem["moments"]}
        hit = by_asset[ids["news"]]
        assert "bridge" in hit["text"].lower() and abs(hit["start_ms"] / 1000 - AT_2) < 1.0, sem
        assert hit["seek_url"].endswith(f"#t={hit['start_ms'] / 1000:g}") and sem["model"].startswith("text_embed:")
        assert "bridge" in sem["moments"][0]["text"].lower() and ids["silent"] not in by_asset, sem
        words = client.get("/v1/moments", params={"q": PARAPHRASE}, headers=headers).json()["moments"]
        assert words == [], words  # full text cannot find it: the match is by meaning
        # asset search: the video hit lists its best moment; language is a facet
        res = client.get("/v1/search", params={"q": "harbour bridge", "facet": ["language", "media_type"]},
                         headers=headers).json()
        video = next(h for h in res["hits"] if h["asset_id"] == ids["news"])
        assert video["moments"] and video["moments"][0]["kind"] == "speech"
        assert abs(video["moments"][0]["start_ms"] / 1000 - AT_2) < 1.0
        assert res["facets"]["language"].get("en", 0) >= 3 and res["facets"]["media_type"].get("audio", 0) >= 1
        # subtitles
        vtt = client.get(f"/v1/assets/{ids['news']}/transcript.vtt", headers=headers)
        assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT") and "bridge" in vtt.text.lower()
        srt = client.get(f"/v1/assets/{ids['news']}/transcript.srt", headers=headers)
        assert srt.status_code == 200 and srt.text.startswith("1\n00:00:0")
        tr = client.get(f"/v1/assets/{ids['mute']}/transcript", headers=headers).json()
        assert tr["status"] == "no_audio" and tr["segments"] == []
        # keyframe-level more-like-this: the coffee frame of the news clip -> the mute clip, where coffee starts
        sim = client.get(f"/v1/assets/{ids['news']}/moments/similar",
                         params={"t_ms": 10_000, "model": "efficientnet_lite0", "k": 3}, headers=headers).json()
        assert sim["query_t_ms"] is not None and sim["query_t_ms"] >= 7000, sim
        top = sim["moments"][0]
        assert top["asset_id"] == ids["mute"] and 3500 <= top["start_ms"] <= 8000, sim
        # search by picture: each video hit says at which time the picture is shown
        found = client.post("/v1/search/image", files={"file": ("q.png", _png(photo("coffee")), "image/png")},
                            data={"model": "efficientnet_lite0", "k": "5"}, headers=headers).json()
        where = {h["asset_id"]: h["moments"] for h in found["hits"]}
        assert where[ids["mute"]][0]["kind"] == "frame" and where[ids["mute"]][0]["start_ms"] >= 3500, found
        assert where[ids["news"]][0]["start_ms"] >= 6500, found


def _png(arr: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()
