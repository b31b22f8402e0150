"""Test media for near-duplicate detection, made from the real photos that ship in PyPI wheels.

Images: a Copydays-style set of transformation families (JPEG, scaling, crops, rotations, colour,
overlays, mirroring, borders, screenshot padding). Videos: slow pans/zooms over a photo encoded
with PyAV (so consecutive seconds differ), and their copies: re-encoded, rescaled, trimmed, cut
out of a longer video, with a black intro prepended. Used by benchmarks/ndd_eval.py and the tests.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from fractions import Fraction
from functools import partial
from typing import cast

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

# ------------------------------------------------------------------------------ photos


def real_photos() -> dict[str, Image.Image]:
    """Every real photograph in skimage.data and sklearn's sample images (RGB, no download)."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    names = ["astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
             "horse", "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon", "page", "retina",
             "rocket", "text"]
    out: dict[str, Image.Image] = {}
    for n in names:
        try:
            arr = np.asarray(getattr(sd, n)())
        except Exception:  # noqa: BLE001 - a photo missing from this skimage version is skipped
            continue
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        out[n] = Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    left, right = sd.stereo_motorcycle()[:2]
    out["motorcycle_left"] = Image.fromarray(left).convert("RGB")
    out["motorcycle_right"] = Image.fromarray(right).convert("RGB")
    sk = load_sample_images()
    for fname, arr in zip(sk.filenames, sk.images, strict=True):
        out[fname.rsplit("/", 1)[-1].split(".")[0]] = Image.fromarray(arr).convert("RGB")
    return out


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def to_jpeg_bytes(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def scale(img: Image.Image, factor: float) -> Image.Image:
    return img.resize((max(8, round(img.width * factor)), max(8, round(img.height * factor))),
                      Image.Resampling.BILINEAR)


def crop(img: Image.Image, frac: float, where: str = "center") -> Image.Image:
    """Remove ``frac`` of the area."""
    w, h = img.size
    s = (1 - frac) ** 0.5
    cw, ch = round(w * s), round(h * s)
    x = {"center": (w - cw) // 2, "topleft": 0, "bottomright": w - cw}[where]
    y = {"center": (h - ch) // 2, "topleft": 0, "bottomright": h - ch}[where]
    return img.crop((x, y, x + cw, y + ch))


def overlay_text(img: Image.Image, text: str = "BREAKING NEWS  exclusive footage") -> Image.Image:
    out = img.copy()
    d = ImageDraw.Draw(out)
    w, h = out.size
    d.rectangle((0, int(h * 0.82), w, int(h * 0.95)), fill=(200, 0, 0))
    d.text((int(w * 0.03), int(h * 0.85)), text, fill=(255, 255, 255))
    return out


def overlay_logo(img: Image.Image) -> Image.Image:
    out = img.copy()
    d = ImageDraw.Draw(out)
    w, h = out.size
    r = max(8, w // 10)
    d.ellipse((w - 2 * r - 8, 8, w - 8, 8 + 2 * r), fill=(255, 255, 255), outline=(0, 0, 0), width=3)
    d.text((w - 2 * r + 4, 8 + r - 6), "TV1", fill=(0, 0, 0))
    return out


def border(img: Image.Image, frac: float = 0.1, colour: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    w, h = img.size
    return ImageOps.expand(img, border=(round(w * frac), round(h * frac)), fill=colour)


def screenshot(img: Image.Image) -> Image.Image:
    """The photo as seen in a screenshot of a phone/app: scaled down onto a canvas with UI bars."""
    w, h = img.size
    cw, ch = w, round(h * 1.8)
    canvas = Image.new("RGB", (cw, ch), (245, 245, 245))
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, cw, round(ch * 0.07)), fill=(30, 30, 30))
    d.text((10, 10), "12:41   news feed", fill=(255, 255, 255))
    d.text((10, round(ch * 0.12)), "Shared by @someone  2h", fill=(20, 20, 20))
    canvas.paste(img, (0, round(ch * 0.2)))
    d.text((10, round(ch * 0.2) + h + 10), "1,204 likes   98 comments", fill=(20, 20, 20))
    return canvas


def blurred_border(img: Image.Image, frac: float = 0.2) -> Image.Image:
    """The social-media 'blurred fill': the picture on a blown-up, blurred copy of itself."""
    from PIL import ImageFilter

    w, h = img.size
    cw, ch = round(w * (1 + 2 * frac)), round(h * (1 + 2 * frac))
    bg = img.resize((cw, ch), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(max(4, cw // 40)))
    bg.paste(img, ((cw - w) // 2, (ch - h) // 2))
    return bg


def screenshot_page(img: Image.Image, seed: int = 0) -> Image.Image:
    """The picture inside a web page / app post: scaled into a wider canvas with a header, text lines
    above and beside it, a caption and buttons below (a desktop screenshot of an article)."""
    rng = np.random.default_rng(seed)
    w, h = img.size
    cw = round(w * 1.6)
    pw = round(w * 0.9)
    ph = round(h * pw / w)
    ch = ph + round(h * 0.9)
    canvas = Image.new("RGB", (cw, ch), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, cw, round(ch * 0.06)), fill=(24, 60, 120))
    d.text((12, 8), "The Daily Example  |  World  Politics  Sport  Culture", fill=(255, 255, 255))
    y = round(ch * 0.09)
    for i in range(4):
        d.text((20, y + 16 * i), " ".join(("lorem", "ipsum", "dolor", "sit", "amet")[int(rng.integers(0, 5))]
                                          for _ in range(12)), fill=(40, 40, 40))
    top = y + 80
    canvas.paste(img.resize((pw, ph), Image.Resampling.BILINEAR), (20, top))
    for i in range(12):  # a sidebar
        d.text((pw + 40, top + 20 * i), f"Most read {i + 1}: headline text", fill=(60, 60, 60))
    d.text((20, top + ph + 8), "Photo: agency / caption of the picture", fill=(110, 110, 110))
    d.rectangle((20, top + ph + 30, 120, top + ph + 50), outline=(0, 0, 0))
    d.text((30, top + ph + 34), "Share", fill=(0, 0, 0))
    return canvas


def tilt(img: Image.Image, amount: float = 0.08) -> Image.Image:
    """A perspective tilt (a photo of a screen or a print, taken slightly off-axis)."""
    w, h = img.size
    dx, dy = amount * w, amount * h
    # the source quad that maps onto the output rectangle (PIL's QUAD: ul, ll, lr, ur corners)
    quad = (dx, dy * 0.5, 0, h, w, h - dy * 0.2, w - dx * 0.6, 0)
    return img.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)


def banner(img: Image.Image) -> Image.Image:
    """A thick caption banner with big text across the lower third (meme/news-ticker style)."""
    from PIL import ImageFont

    out = img.copy()
    d = ImageDraw.Draw(out)
    w, h = out.size
    d.rectangle((0, int(h * 0.70), w, int(h * 0.86)), fill=(250, 250, 250))
    font = ImageFont.load_default(size=max(10, h // 14))
    d.text((int(w * 0.04), int(h * 0.72)), "THIS CHANGES EVERYTHING", fill=(0, 0, 0), font=font)
    return out


Transform = Callable[[Image.Image], Image.Image]


def image_families() -> dict[str, list[tuple[str, Transform]]]:
    """Transformation family -> [(name, transform)]; 'mild' families are the PDQ targets' scope, the
    framing families (crops, borders, screenshots, overlays, rotations) the second stage's."""
    def rot(deg: float) -> Transform:
        return lambda im: im.rotate(deg, resample=Image.Resampling.BILINEAR, expand=False)

    def rot_expand(deg: float) -> Transform:
        return lambda im: im.rotate(deg, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(255, 255, 255))

    def crops(fracs: tuple[float, ...], wheres: tuple[str, ...]) -> list[tuple[str, Transform]]:
        return [(f"crop{int(f * 100)}{w}", partial(crop, frac=f, where=w)) for f in fracs for w in wheres]

    return {
        "jpeg>=30": [(f"jpeg{q}", partial(jpeg, quality=q)) for q in (75, 50, 30)],
        "jpeg10": [("jpeg10", lambda im: jpeg(im, 10))],
        "scale": [(f"scale{s}", partial(scale, factor=s)) for s in (0.5, 0.25)],
        "colour": [
            ("bright+30%", lambda im: ImageEnhance.Brightness(im).enhance(1.3)),
            ("dark-30%", lambda im: ImageEnhance.Brightness(im).enhance(0.7)),
            ("contrast+50%", lambda im: ImageEnhance.Contrast(im).enhance(1.5)),
            ("saturation0", lambda im: ImageEnhance.Color(im).enhance(0.0)),
            ("saturation+80%", lambda im: ImageEnhance.Color(im).enhance(1.8)),
        ],
        "mirror": [("mirror", ImageOps.mirror)],
        "crop10-30%": crops((0.1, 0.2, 0.3), ("center", "topleft", "bottomright")),
        "crop40-50%": crops((0.4, 0.5), ("center", "topleft", "bottomright")),
        "border": [("border10black", lambda im: border(im, 0.1)),
                   ("border25white", lambda im: border(im, 0.25, (255,) * 3)),
                   ("border30white", lambda im: border(im, 0.3, (255,) * 3)),
                   ("blurfill15", lambda im: blurred_border(im, 0.15)),
                   ("blurfill30", lambda im: blurred_border(im, 0.3))],
        "screenshot": [("phone", screenshot), ("page", screenshot_page)],
        "overlay": [("text", overlay_text), ("logo", overlay_logo), ("banner", banner)],
        "rotate<=5": [(f"rot{d}", rot(d)) for d in (2, 5)] + [("rot3expand", rot_expand(3))],
        "rotate10": [("rot10", rot(10))],
        "tilt": [("tilt5", lambda im: tilt(im, 0.05)), ("tilt10", lambda im: tilt(im, 0.10))],
        "combined": [("scale0.5+jpeg50+text", lambda im: jpeg(overlay_text(im.resize((im.width // 2, im.height // 2))),
                                                               50)),
                     ("crop20+jpeg50+logo", lambda im: jpeg(overlay_logo(crop(im, 0.2, "topleft")), 50))],
    }


# the PDQ path's target scope (kept from the first evaluation) and the framing families the region and
# keypoint paths are for, with their targets (recall >= 0.95 at precision >= 0.99)
MILD_FAMILIES = ("jpeg>=30", "scale", "colour")
TARGET_FAMILIES = ("crop10-30%", "border", "screenshot", "overlay", "rotate<=5")
HARD_FAMILIES = ("crop40-50%", "rotate10", "tilt", "combined")

# ------------------------------------------------------------------------------ videos

SIZE = (320, 240)


def pan_zoom_frames(photo: Image.Image, seconds: float, fps: int = 15, size: tuple[int, int] = SIZE,
                    seed: int = 0) -> Iterator[np.ndarray]:
    """A slow 'Ken Burns' move over the photo: the window pans and zooms, so every second differs."""
    rng = np.random.default_rng(seed)
    w, h = photo.size
    z0, z1 = rng.uniform(0.55, 0.75), rng.uniform(0.8, 1.0)
    x0, y0, x1, y1 = rng.uniform(0, 1, 4)
    n = round(seconds * fps)
    aspect = size[0] / size[1]
    for i in range(n):
        a = i / max(1, n - 1)
        z = z0 + (z1 - z0) * a
        cw = min(w, h * aspect) * z
        ch = cw / aspect
        cx = (x0 + (x1 - x0) * a) * (w - cw)
        cy = (y0 + (y1 - y0) * a) * (h - ch)
        frame = photo.resize(size, Image.Resampling.BILINEAR, box=(cx, cy, cx + cw, cy + ch))
        yield np.asarray(frame, dtype=np.uint8)


def black_frames(seconds: float, fps: int = 15, size: tuple[int, int] = SIZE) -> Iterator[np.ndarray]:
    for _ in range(round(seconds * fps)):
        yield np.zeros((size[1], size[0], 3), dtype=np.uint8)


def encode(frames: Iterator[np.ndarray] | list[np.ndarray], fps: int = 15, codec: str = "libx264",
           fmt: str = "mp4", crf: int = 23, size: tuple[int, int] | None = None) -> bytes:
    """Encode RGB frames into an in-memory video file (mp4/h264 by default)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream = cast("av.VideoStream", out.add_stream(codec, rate=fps))
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        elif codec == "mpeg4":
            stream.options = {"qscale": str(max(2, crf // 3))}
        elif codec == "libvpx":
            stream.options = {"crf": str(crf), "b": "500k", "deadline": "realtime", "cpu-used": "8"}
        stream.time_base = Fraction(1, fps)
        first = True
        for i, arr in enumerate(frames):
            if size is not None and (arr.shape[1], arr.shape[0]) != size:
                arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR))
            if first:
                stream.width, stream.height = arr.shape[1], arr.shape[0]
                first = False
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def decode(data: bytes) -> tuple[list[np.ndarray], int]:
    """All frames (RGB) and the frame rate of a small test video."""
    import av

    with cast("av.container.InputContainer", av.open(io.BytesIO(data), mode="r")) as c:
        s = c.streams.video[0]
        fps = round(float(s.average_rate or 15))
        return [f.to_ndarray(format="rgb24") for f in c.decode(s)], fps


def video_variants(original: bytes) -> dict[str, tuple[bytes, int]]:
    """Copies of ``original`` -> (bytes, start of the copy in the original in ms)."""
    frames, fps = decode(original)
    n = len(frames)
    out: dict[str, tuple[bytes, int]] = {
        "reencode-webm": (encode(iter(frames), fps, codec="libvpx", fmt="webm", crf=40), 0),
        "reencode-h264-crf35": (encode(iter(frames), fps, crf=35), 0),
        "rescale-160x120": (encode(iter(frames), fps, size=(160, 120)), 0),
        "rescale-640x480": (encode(iter(frames), fps, size=(640, 480)), 0),
        "trim-3s-2s": (encode(iter(frames[3 * fps: n - 2 * fps]), fps), 3000),
        "subclip-6s": (encode(iter(frames[n // 3: n // 3 + 6 * fps]), fps), round(n // 3 * 1000 / fps)),
        "black-intro-4s": (encode(list(black_frames(4, fps)) + frames, fps), -4000),
    }
    return out
