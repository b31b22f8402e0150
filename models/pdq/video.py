"""Per-frame PDQ for videos (the vPDQ idea): decode with PyAV, hash one frame per interval.

Memory stays bounded whatever the video's length: frames are decoded one at a time, the sampled
ones are shrunk to <= 512 px and hashed at once, nothing else is kept. A long video is sampled
less often so that it never yields more than ``max_frames`` hashes. Every frame keeps its PDQ
quality; the matcher ignores frames below the quality floor (black/uniform intros, fades).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from core.imaging import MediaDecodeError
from models.pdq.hashing import MAX_SIDE, hash_array
from models.pdq.regions import RegionHash, region_hashes


@dataclass(frozen=True)
class FrameHash:
    t_ms: int  # from the first decoded frame of the video
    hash: str
    quality: int
    regions: tuple[RegionHash, ...] = ()  # letterboxed / bordered frames: the content area's hash


@dataclass(frozen=True)
class VideoHashes:
    frames: list[FrameHash]
    duration_ms: int
    interval_ms: int


def sampling_interval_ms(duration_ms: int, fps: float, max_frames: int) -> int:
    """1/fps, stretched for long videos so that at most ``max_frames`` frames are hashed."""
    base = round(1000 / fps)
    if duration_ms <= 0:
        return base
    return max(base, -(-duration_ms // max(1, max_frames)))


def hash_video(data: bytes, fps: float = 1.0, max_frames: int = 1200, max_pixels: int = 80_000_000,
               max_side: int = MAX_SIDE, regions: bool = True) -> VideoHashes:
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaDecodeError(f"not a decodable video: {exc}") from None
    with container:
        if not container.streams.video:
            raise MediaDecodeError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        if width * height > max_pixels:
            raise MediaDecodeError(f"video frame too large: {width}x{height} > {max_pixels} pixels")
        duration_ms = int(container.duration / 1000) if container.duration else 0
        interval = sampling_interval_ms(duration_ms, fps, max_frames)
        frames: list[FrameHash] = []
        start: float | None = None
        next_ms = 0
        last_ms = 0
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                if start is None:
                    start = frame.time
                t_ms = round((frame.time - start) * 1000)
                last_ms = max(last_ms, t_ms)
                if t_ms < next_ms:
                    continue
                scale = min(1.0, max_side / max(frame.width, frame.height))
                small = frame.reformat(width=max(1, round(frame.width * scale)),
                                       height=max(1, round(frame.height * scale)), format="rgb24")
                rgb = small.to_ndarray()
                h, q = hash_array(rgb)
                frames.append(FrameHash(t_ms, h, q, tuple(region_hashes(rgb)) if regions else ()))
                while next_ms <= t_ms:
                    next_ms += interval
                if len(frames) >= max_frames:
                    break
        except av.error.FFmpegError as exc:
            if not frames:
                raise MediaDecodeError(f"corrupt video data: {exc}") from None
            # a damaged tail still leaves the decoded part's hashes usable
        if not frames:
            raise MediaDecodeError("video has no decodable frames")
        return VideoHashes(frames, max(duration_ms, last_ms), interval)
