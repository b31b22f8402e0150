"""An asset's sound as 16 kHz mono int16 PCM, decoded with PyAV in bounded memory and time.

Whatever the source (a video's first audio stream, or an audio-only file; 8 kHz telephone audio, 5.1 or 7.1
channels, any codec FFmpeg reads), FFmpeg's resampler turns it into what speech models take: 16 kHz, one channel
(a channel layout downmix), signed 16-bit. At most ``max_ms`` is decoded: a 10-hour recording costs what its
first ``max_ms`` cost, and the rest is reported as skipped (``AudioTrack.skipped_ms``), never silently dropped.

A damaged audio stream inside a good video is not fatal: what decoded before the damage is kept and the track
says where decoding stopped (``partial``, ``error``); a video whose audio cannot be decoded at all is
``undecodable`` (its pictures are fine); only an audio-only file without decodable audio raises ``MediaDecodeError``.
A file without an audio stream is ``AudioTrack(status="no_audio")``, not an error: a silent newsreel is normal.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.imaging import MediaDecodeError

RATE = 16_000  # samples per second of the output
Status = Literal["ok", "no_audio", "partial", "undecodable"]


@dataclass(frozen=True)
class AudioTrack:
    pcm: np.ndarray  # int16 [n] mono at RATE
    status: Status
    source_rate: int  # the stream's own sample rate (0: no audio)
    source_channels: int
    codec: str
    duration_ms: int | None  # the container's duration, when it says
    decoded_ms: int  # what ``pcm`` holds
    skipped_ms: int  # known to exist beyond ``max_ms`` (0 when all was decoded or the duration is unknown)
    error: str | None = None  # why decoding stopped early (``partial``)


def _duration_ms(container, stream) -> int | None:  # type: ignore[no-untyped-def]
    if stream.duration is not None and stream.time_base is not None:
        return int(stream.duration * stream.time_base * 1000)
    if container.duration is not None:
        return int(container.duration / 1000)  # microseconds
    return None


def decode(data: bytes, *, max_ms: int) -> AudioTrack:
    """The first audio stream of ``data`` as 16 kHz mono int16, at most ``max_ms`` of it."""
    import av  # the PyAV wheel bundles FFmpeg

    av.logging.set_level(av.logging.PANIC)  # damaged packets: our status carries the reason
    if not data:
        raise MediaDecodeError("empty file (0 bytes)")
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise MediaDecodeError(f"corrupt or unsupported media container: {exc}") from None
    try:
        if not container.streams.audio:
            duration = int(container.duration / 1000) if container.duration else None
            return AudioTrack(np.zeros(0, np.int16), "no_audio", 0, 0, "", duration, 0, 0)
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        rate, channels, codec = int(ctx.sample_rate or 0), int(ctx.channels or 0), str(ctx.name or "")
        duration = _duration_ms(container, stream)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        cap = max(0, max_ms) * RATE // 1000
        parts: list[np.ndarray] = []
        have = 0
        error: str | None = None
        capped = False
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    parts.append(arr[: cap - have])
                    have += min(len(arr), cap - have)
                if have >= cap:
                    capped = True
                    break
            if not capped:
                for out in resampler.resample(None):  # flush the resampler's tail
                    arr = out.to_ndarray().reshape(-1)
                    parts.append(arr[: cap - have])
                    have += min(len(arr), cap - have)
        except (av.FFmpegError, ValueError) as exc:
            error = f"audio decoding stopped at {have * 1000 // RATE} ms: {type(exc).__name__}: {exc}"
        pcm = np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0, np.int16), dtype=np.int16)
        decoded_ms = len(pcm) * 1000 // RATE
        if error is not None and len(pcm) == 0:
            if not container.streams.video:  # an audio file whose audio cannot be read is a broken file
                raise MediaDecodeError(f"undecodable audio stream ({codec or 'unknown codec'}): {error}")
            # a good video with a damaged sound track: its pictures are still annotated by the other models
            return AudioTrack(pcm, "undecodable", rate, channels, codec, duration, 0, 0, error)
        skipped = max(0, duration - decoded_ms) if (capped and duration is not None) else 0
        if capped and duration is None:
            skipped = 1  # more exists, length unknown: still reported as capped
        return AudioTrack(pcm, "partial" if error else "ok", rate, channels, codec, duration, decoded_ms, skipped,
                          error)
    finally:
        container.close()
