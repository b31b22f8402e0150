"""Test videos made from the real sample photos with PyAV (no files shipped, nothing downloaded)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

# container -> (PyAV format name, video codec)
FORMATS = {
    "mp4": ("mp4", "libx264"),
    "mov": ("mov", "libx264"),
    "webm": ("webm", "libvpx"),
    "mkv": ("matroska", "libx264"),
}


def make_video(shots: Sequence[tuple[np.ndarray, float]], fmt: str = "mp4", fps: int = 10,
               size: tuple[int, int] = (320, 240), audio: bool = False, gop: int | None = None) -> bytes:
    """A video of consecutive shots: (RGB photo, seconds on screen). Each shot pans slowly so that
    frames within a shot differ a little (like real footage) but far less than at a cut."""
    container_fmt, codec = FORMATS[fmt]
    buf = io.BytesIO()
    with __import__("av").open(buf, mode="w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        if audio:
            a = out.add_stream("aac", rate=16000)
        for photo, seconds in shots:
            base = Image.fromarray(photo).convert("RGB").resize((size[0] + 40, size[1] + 30))
            n = max(1, round(seconds * fps))
            for i in range(n):
                dx = int(40 * i / max(1, n - 1)) if n > 1 else 0
                frame_img = base.crop((dx, 15, dx + size[0], 15 + size[1]))
                frame = __import__("av").VideoFrame.from_image(frame_img)
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio:
            _ = a  # audio stream declared, no samples: still a valid container
    return buf.getvalue()


def make_audio_only(seconds: float = 1.0) -> bytes:
    """An M4A/MP4 container with an AAC audio stream and no video stream."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = int(16000 * seconds)
        t = np.arange(samples, dtype=np.float32) / 16000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()
