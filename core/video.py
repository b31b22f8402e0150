"""Video decoding shared by every model that looks at frames (annotation keyframes, near-duplicate hashes).

Two entry points, both on untrusted bytes, both with bounded memory and CPU:

* ``iter_frames(data, every_ms=...)``: generic frames at a fixed rate with their timestamps (a
  generator: one decoded frame alive at a time). Reusable by anything that hashes or samples frames.
* ``keyframes(data, ...)``: the frames worth annotating: the first frame, scene changes and a
  fixed-rate fill for long static shots, capped per video.

Bounds: frames are downscaled to ``max_side`` as soon as they are decoded; at most ``max_samples``
frames are sampled per video (the sampling interval grows with the duration, so a 10-hour video
costs about as much as a 10-minute one); far-apart samples are reached by seeking, never by
decoding everything in between; ``max_decoded`` caps the decoded frames per call. Every failure
becomes ``MediaDecodeError`` with a short reason (corrupt container, no video stream, no frames).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.imaging import MediaDecodeError

__all__ = ["Frame", "VideoInfo", "iter_frames", "keyframes", "probe"]

log = logging.getLogger(__name__)

# seeking costs one GOP of decoding; below this gap decoding straight through is cheaper
_SEEK_GAP_MS = 4000


@dataclass(frozen=True)
class Frame:
    pts_ms: int  # presentation time from the start of the stream
    image: Image.Image  # RGB, longest side <= max_side
    score: float = 0.0  # scene-change strength against the previous sample (keyframes only)


@dataclass(frozen=True)
class VideoInfo:
    duration_ms: int | None
    width: int
    height: int
    codec: str
    fps: float | None


def _quiet() -> None:
    # FFmpeg prints every damaged packet to stderr; our errors carry the reason instead
    import av

    av.logging.set_level(av.logging.PANIC)


def _open(data: bytes):  # type: ignore[no-untyped-def]  # av.container.InputContainer
    import av

    _quiet()
    if not data:
        raise MediaDecodeError("empty file (0 bytes)")
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise MediaDecodeError(f"corrupt or unsupported video container: {exc}") from None
    if not container.streams.video:
        container.close()
        raise MediaDecodeError("no video stream in the file (audio-only or data-only container)")
    return container


def _info(container) -> VideoInfo:  # type: ignore[no-untyped-def]
    stream = container.streams.video[0]
    duration_ms: int | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration_ms = int(stream.duration * stream.time_base * 1000)
    elif container.duration is not None:
        duration_ms = int(container.duration / 1000)  # container.duration is in microseconds
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(duration_ms, stream.codec_context.width, stream.codec_context.height,
                     stream.codec_context.name, float(rate) if rate else None)


def probe(data: bytes) -> VideoInfo:
    """Duration, size and codec from the container header (nothing is decoded)."""
    container = _open(data)
    try:
        return _info(container)
    finally:
        container.close()


def _to_image(frame, max_side: int) -> Image.Image:  # type: ignore[no-untyped-def]
    w, h = frame.width, frame.height
    scale = min(1.0, max_side / max(w, h, 1))
    if scale < 1.0:  # let FFmpeg's scaler shrink it: never materialise a full 4K RGB frame
        frame = frame.reformat(width=max(1, round(w * scale)), height=max(1, round(h * scale)), format="rgb24")
    return frame.to_image().convert("RGB")


def iter_frames(data: bytes, *, every_ms: int = 1000, max_frames: int = 240, max_side: int = 1280,
                max_decoded: int = 20_000) -> Iterator[Frame]:
    """Frames at (about) every ``every_ms`` from the start, at most ``max_frames`` of them.

    If the video is long enough that ``every_ms`` would give more than ``max_frames``, the interval
    is stretched to cover the whole duration. Raises MediaDecodeError when nothing can be decoded.
    """
    import av

    container = _open(data)
    try:
        info = _info(container)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        interval = max(1, every_ms)
        if info.duration_ms and info.duration_ms / interval > max_frames:
            interval = max(interval, info.duration_ms // max_frames + 1)
        tb = stream.time_base
        next_ms, emitted, decoded = 0, 0, 0
        last_ms = -1
        can_seek, seeked_from = tb is not None, None
        while emitted < max_frames:
            restart = False
            try:
                for frame in container.decode(stream):
                    decoded += 1
                    t_ms = last_ms + 1 if frame.pts is None or tb is None else int(frame.pts * tb * 1000)
                    if seeked_from is not None and t_ms <= seeked_from:
                        can_seek = False  # the seek went back (sparse keyframes): decode straight on
                    seeked_from = None
                    if t_ms <= last_ms and not can_seek:
                        continue  # frames already seen before a backward seek
                    last_ms = t_ms
                    if t_ms >= next_ms:
                        yield Frame(t_ms, _to_image(frame, max_side))
                        emitted += 1
                        next_ms = max(next_ms + interval, t_ms + 1)
                        if emitted >= max_frames:
                            return
                        if next_ms - t_ms > _SEEK_GAP_MS and can_seek and tb is not None:
                            # far ahead: jump to the keyframe before the next sample
                            container.seek(int(next_ms / 1000 / tb), stream=stream, backward=True)
                            seeked_from, restart = t_ms, True
                            break
                    if decoded >= max_decoded:
                        log.warning("video: stopped after %d decoded frames (max_decoded)", decoded)
                        return
            except av.FFmpegError as exc:
                if emitted == 0:
                    raise MediaDecodeError(f"corrupt video data: {exc}") from None
                log.warning("video: decoding stopped at %d ms: %s", last_ms, exc)
                return
            if not restart:
                break
        if emitted == 0:
            raise MediaDecodeError("no decodable video frames")
    finally:
        container.close()


def _thumb(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def keyframes(data: bytes, *, max_frames: int = 16, sample_ms: int = 500, max_samples: int = 240,
              scene_threshold: float = 0.12, fill_ms: int = 10_000, max_side: int = 1280) -> list[Frame]:
    """The frames to annotate: the first frame, every scene change, and one frame per ``fill_ms`` of a
    long unchanging shot; at most ``max_frames`` (the strongest changes win), in time order.

    A scene change is a mean absolute difference of 32x32 grey thumbnails above ``scene_threshold``
    between consecutive samples (taken every ``sample_ms``, at most ``max_samples``). Only the
    candidates are kept in memory, never the whole sample.
    """
    candidates: list[Frame] = []
    prev: np.ndarray | None = None
    last_kept_ms = -fill_ms
    for f in iter_frames(data, every_ms=sample_ms, max_frames=max_samples, max_side=max_side):
        thumb = _thumb(f.image)
        change = 1.0 if prev is None else float(np.abs(thumb - prev).mean())
        prev = thumb
        if change >= scene_threshold or f.pts_ms - last_kept_ms >= fill_ms:
            # a fill frame ranks below any real scene change
            score = change if change >= scene_threshold else change * 0.01
            candidates.append(Frame(f.pts_ms, f.image, score))
            last_kept_ms = f.pts_ms
            if len(candidates) > 2 * max_frames:  # bounded memory: drop the weakest (never the first)
                weakest = min(range(1, len(candidates)), key=lambda i: candidates[i].score)
                del candidates[weakest]
    if len(candidates) > max_frames:
        keep = sorted(range(1, len(candidates)), key=lambda i: -candidates[i].score)[: max_frames - 1]
        candidates = [candidates[0]] + [candidates[i] for i in sorted(keep)]
    return candidates
