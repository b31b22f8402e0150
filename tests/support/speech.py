"""Test speech made offline: Debian's espeak-ng speaks known sentences, PyAV muxes them into videos and audio files
(at any rate and channel count), numpy mixes in noise. Nothing is downloaded."""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from models.speech_whisper import spoken

RATE = 16_000


def need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        # justified: test speech needs Debian's espeak-ng; bootstrap installs it as root, so CI always has it
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng; scripts/bootstrap.sh installs it as root)")


def say(text: str, voice: str = "en", speed: int = 160) -> np.ndarray:
    need_espeak()
    pcm = spoken(text, voice, speed)
    assert pcm is not None
    return pcm


def track(lines: Sequence[tuple[float, np.ndarray]], seconds: float) -> np.ndarray:
    """int16 16 kHz mono of ``seconds`` with each clip placed at its start second."""
    out = np.zeros(int(seconds * RATE), np.int32)
    for at, clip in lines:
        i = int(at * RATE)
        n = min(len(clip), len(out) - i)
        out[i:i + n] += clip[:n]
    return np.clip(out, -32768, 32767).astype(np.int16)


def add_noise(pcm: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at ``snr_db`` below the speech's power (measured where there is speech)."""
    x = pcm.astype(np.float64)
    voiced = x[np.abs(x) > 200]
    power = float(np.mean(voiced ** 2)) if voiced.size else 1.0
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(x))
    return np.clip(x + noise, -32768, 32767).astype(np.int16)


def _audio_frames(pcm: np.ndarray, rate: int, channels: int, frame: int = 1024):  # type: ignore[no-untyped-def]
    import av

    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    data = np.repeat((pcm.astype(np.float32) / 32768.0)[None], channels, axis=0)
    for i in range(0, data.shape[1], frame):
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, i:i + frame]), format="fltp", layout=layout)
        f.sample_rate = rate
        f.pts = i
        yield f


def resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz -> ``rate`` by linear interpolation (test signals only)."""
    n = int(len(pcm) * rate / RATE)
    return np.interp(np.arange(n) * RATE / rate, np.arange(len(pcm)), pcm.astype(np.float64)).astype(np.int16)


def speech_video(photos: Sequence[tuple[np.ndarray, float]], pcm: np.ndarray | None, *, rate: int = RATE,
                 channels: int = 1, corrupt_audio: bool = False, fps: int = 5,
                 size: tuple[int, int] = (320, 240)) -> bytes:
    """An MP4 (H.264) of ``photos`` shots with ``pcm`` (16 kHz mono) as its AAC track at ``rate``/``channels``;
    ``corrupt_audio``: the audio packets are replaced by garbage (a damaged stream inside a good video)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        aus = None
        if pcm is not None:
            aus = out.add_stream("aac", rate=rate)
            aus.layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
            src = resample(pcm, rate) if rate != RATE else pcm
            rng = np.random.default_rng(1)
            for f in _audio_frames(src, rate, channels):
                for p in aus.encode(f):
                    if corrupt_audio:
                        bad = av.Packet(rng.integers(0, 256, p.size, dtype=np.uint8).tobytes())
                        bad.stream, bad.pts, bad.dts, bad.time_base = p.stream, p.pts, p.dts, p.time_base
                        out.mux(bad)
                    else:
                        out.mux(p)
            for p in aus.encode():
                if not corrupt_audio:
                    out.mux(p)
        for photo, seconds in photos:
            img = Image.fromarray(photo).convert("RGB").resize(size)
            for _ in range(max(1, round(seconds * fps))):
                for p in vs.encode(av.VideoFrame.from_image(img)):
                    out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return buf.getvalue()


def wav(pcm: np.ndarray, rate: int = RATE, channels: int = 1) -> bytes:
    """A PCM WAV file of ``pcm`` (16 kHz mono) at ``rate`` with ``channels`` identical channels."""
    import wave

    src = resample(pcm, rate) if rate != RATE else pcm
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(src[:, None], channels, axis=1).astype("<i2").tobytes())
    return buf.getvalue()
