"""Known inputs for ``argus models verify`` (and the tests): sample photos, rendered text, one Triton call."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from PIL import Image, ImageDraw, ImageFont
from tritonclient.utils import np_to_triton_dtype

OCR_PROBE = ("HELLO WORLD 2024", "Media asset search")


def photo(name: str) -> Image.Image:
    """One of scikit-image's sample photos ("astronaut", "chelsea" the cat, "coffee" ...) as RGB."""
    from skimage import data  # lazy: scikit-image takes ~1 s to import and only checks need it

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def rendered_text(lines: tuple[str, ...] = OCR_PROBE, size: tuple[int, int] = (720, 260)) -> Image.Image:
    """Black text on white, drawn with Pillow's built-in scalable font (no font files needed)."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=48)
    for i, line in enumerate(lines):
        draw.text((30, 40 + 90 * i), line, fill="black", font=font)
    return img


def squash(text: str) -> str:
    """Compare OCR output without spaces and case (PP-OCR sometimes drops the space between words)."""
    return "".join(text.split()).lower()


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def triton_infer(client: Any, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """One request through a ``tritonclient.http`` client (what verify uses: no retries, errors surface)."""
    req = []
    for name, arr in inputs.items():
        inp = httpclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        inp.set_data_from_numpy(arr)
        req.append(inp)
    res = client.infer(model, req, outputs=[httpclient.InferRequestedOutput(o) for o in outputs])
    return {o: res.as_numpy(o) for o in outputs}
