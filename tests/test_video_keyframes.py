"""Video keyframes (core/video.py: scene cuts, caps, bounded memory, bad videos) and the generic video
summary of keyframe annotations (models/video_summary.py), on videos made from the sample photos with PyAV.
"""

from __future__ import annotations

import time

import pytest

from core import video
from core.imaging import MediaDecodeError
from core.settings import Settings
from tests.support.models import photo
from tests.support.videofactory import make_audio_only, make_video

SHOTS = [(photo("chelsea"), 2.0), (photo("astronaut"), 2.0), (photo("coffee"), 2.0)]


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm", "mkv"])
def test_keyframes_at_scene_cuts_in_every_container(fmt: str) -> None:
    clip = make_video(SHOTS, fmt)
    info = video.probe(clip)
    assert info.width == 320 and info.duration_ms and 5500 <= info.duration_ms <= 6500
    frames = video.keyframes(clip)
    assert [f.pts_ms for f in frames] == [0, 2000, 4000]  # the first frame + the two cuts
    assert all(max(f.image.size) <= 1280 and f.image.mode == "RGB" for f in frames)


def test_long_video_is_capped_and_sampled_by_seeking() -> None:
    # 20 minutes at 1 fps with a keyframe every 10 s: the sampler must stretch its interval and seek
    shots = [(photo(n), 300.0) for n in ("chelsea", "astronaut", "coffee", "rocket")]
    clip = make_video(shots, "mp4", fps=1, size=(96, 64), gop=10)
    assert video.probe(clip).duration_ms == 1_200_000
    sampled = list(video.iter_frames(clip, every_ms=500, max_frames=40))
    assert len(sampled) == 40 and sampled[-1].pts_ms > 1_100_000  # covers the whole video, 40 frames only
    frames = video.keyframes(clip, max_frames=6, max_samples=40)
    assert len(frames) <= 6 and frames[0].pts_ms == 0
    cuts = [f.pts_ms for f in frames if f.score >= 0.12]
    assert len(cuts) == 4  # the first frame and the 3 cuts (found within one sampling interval)


def test_two_hour_video_capped_keyframes_bounded_memory() -> None:
    import threading

    import psutil

    # 2 hours at 1 fps (4 shots of 30 min): 7200 frames, ~1.2 MB of H.264
    shots = [(photo(n), 1800.0) for n in ("chelsea", "astronaut", "coffee", "rocket")]
    clip = make_video(shots, "mp4", fps=1, size=(96, 64), gop=30)
    assert video.probe(clip).duration_ms == 7_200_000
    proc = psutil.Process()
    base = peak = proc.memory_info().rss
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        frames = video.keyframes(clip)  # the settings' defaults: at most 16 keyframes
    finally:
        done.set()
        watcher.join()
    assert 4 <= len(frames) <= Settings().video.max_keyframes
    # every cut (0, 30, 60, 90 min) is found within one sampling interval
    for cut in (0, 1_800_000, 3_600_000, 5_400_000):
        assert any(cut <= f.pts_ms <= cut + 60_000 for f in frames), (cut, [f.pts_ms for f in frames])
    assert peak - base < 64 * 2**20  # decoded one frame at a time (measured: ~3 MB)


def test_iter_frames_fixed_rate_with_timestamps() -> None:
    clip = make_video(SHOTS, "mkv", fps=10)
    frames = list(video.iter_frames(clip, every_ms=1000))
    assert [f.pts_ms for f in frames] == [0, 1000, 2000, 3000, 4000, 5000]


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "empty"),
        (make_audio_only(), "no video stream"),
        (make_video(SHOTS, "mp4")[:4000], "corrupt"),
        (b"\x1a\x45\xdf\xa3" + bytes(200), "corrupt"),
    ],
    ids=["zero-bytes", "audio-only", "truncated-mp4", "garbage-mkv"],
)
def test_bad_videos_raise_a_reason(blob: bytes, reason: str) -> None:
    with pytest.raises(MediaDecodeError, match=reason):
        video.keyframes(blob)


def test_video_summary_time_ranges() -> None:
    from models.video_summary import summarize
    from schemas.events import Box, Face, FaceDetection, OcrText, TextLine

    box = Box(x1=0.1, y1=0.1, x2=0.2, y2=0.2)
    face = FaceDetection(face_count=1, faces=[Face(box=box, score=0.99)])
    none = FaceDetection(face_count=0, faces=[])
    s = summarize([(4000, face), (0, none), (2000, face), (6000, none), (8000, face)])
    assert s.keyframes_ms == [0, 2000, 4000, 6000, 8000]
    (tag,) = s.tags
    assert tag.name == "face" and tag.keyframes == 3 and tag.score == 0.99
    assert [(r.start_ms, r.end_ms) for r in tag.ranges] == [(2000, 4000), (8000, 8000)]
    assert s.numeric == {"face_count": 1.0}
    ocr = summarize([(0, OcrText(text="BREAKING", lines=[TextLine(text="BREAKING", score=0.9, box=box)])),
                     (1000, OcrText(text="", lines=[]))])
    assert [(t.name, t.ranges[0].end_ms) for t in ocr.text_segments] == [("BREAKING", 0)]
