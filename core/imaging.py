"""Image decoding and model-input preprocessing shared by the processors and the in-process runner.

``load_image`` turns untrusted bytes into an RGB ``PIL.Image`` or raises ``MediaDecodeError`` with a
short reason that can go into an error event. ``to_model_input`` makes the uint8 [size,size,3] array the
image models take; normalisation happens inside the model graphs, not here.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

__all__ = ["ALLOWED_FORMATS", "MediaDecodeError", "load_image", "load_image_sized", "to_model_input"]

# Formats Pillow may try. Restricting them keeps risky decoders (EPS runs Ghostscript) out of reach.
# Multi-picture JPEGs (MPO, from some cameras) open through the JPEG plugin. HEIC/HEIF (iPhone photos) through
# pillow-heif's plugin (libheif), AVIF through Pillow's own.
pillow_heif.register_heif_opener()
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "HEIF", "AVIF")
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SRGB = ImageCms.createProfile("sRGB")


class MediaDecodeError(ValueError):
    """The bytes are not an image we can decode; ``reason`` is a short, stable, human-readable cause."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_image(data: bytes, max_pixels: int, target: int | None = None) -> Image.Image:
    """Decode ``data`` into an upright RGB image (the first frame of animations).

    The pixel count is checked from the header, before any pixel data is decoded. ``target``: the longest
    side the caller will shrink to; a JPEG is then decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose
    result is still at least that large (Pillow's ``draft``), which is several times faster and smaller.
    """
    return load_image_sized(data, max_pixels, target)[0]


def load_image_sized(data: bytes, max_pixels: int, target: int | None = None) -> tuple[Image.Image, int, int]:
    """``load_image`` plus the source's upright width and height (what the image is before any ``target``
    scaling: the header's size, swapped when the EXIF orientation turns it by 90 degrees)."""
    if not data:
        raise MediaDecodeError("empty file (0 bytes)")
    # Pillow's own bomb guard (a warning above MAX_IMAGE_PIXELS, an error above twice that) stays as a
    # second line of defence behind the check below; it must never be stricter than ours.
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        img: Image.Image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)  # reads the header only
        width, height = img.size
        if width <= 0 or height <= 0:
            raise MediaDecodeError(f"invalid image size {width}x{height}")
        if width * height > max_pixels:
            raise MediaDecodeError(
                f"image too large: {width}x{height} = {width * height} pixels > limit {max_pixels}"
            )
        img.seek(0)  # animated GIF/WebP/APNG, multi-page TIFF: the first frame
        if target is not None and target > 0 and max(width, height) > 2 * target:
            scale = target / max(width, height)  # JPEG only (a no-op for other formats); limits checked above
            img.draft(None, (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))
        img.load()  # Pillow refuses truncated data (ImageFile.LOAD_TRUNCATED_IMAGES is False)
    except MediaDecodeError:
        raise
    except UnidentifiedImageError:
        raise MediaDecodeError("not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise MediaDecodeError(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # Pillow's corrupt/truncated-data errors
        text = str(exc)
        reason = "truncated image data" if "truncated" in text else f"corrupt image data: {text}"
        raise MediaDecodeError(reason) from None
    # a broken EXIF block must not lose an otherwise good image
    with contextlib.suppress(Exception):
        turned = img.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that turn the picture by 90 degrees
        img = ImageOps.exif_transpose(img)
        if turned:
            width, height = height, width
    return _to_rgb(img), width, height


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in {"I", "F"}:
        # Pillow's convert() clips these to 0..255 instead of scaling: a 16-bit photo would come out white.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode != "F" else max(float(arr.max()), 1e-12)
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "CMYK" and img.info.get("icc_profile"):
        try:  # the embedded profile gives the right colours; Pillow's plain conversion is naive
            src = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
            converted = ImageCms.profileToProfile(img, src, _SRGB, outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise MediaDecodeError(f"unsupported colour mode {mode}: {exc}") from None


def to_model_input(img: Image.Image, size: int = 224) -> np.ndarray:
    """RGB image -> uint8 [size,size,3]: the whole frame, resized without keeping the aspect ratio.

    A plain bilinear resize (Pillow antialiases when shrinking) gave the best EfficientNet-Lite0 labels on
    the reference photos (cat: Egyptian cat 0.79 vs 0.36 with resize-256 + centre-crop-224, which cut
    off the cat) and keeps the whole picture in the embedding.
    """
    if img.mode != "RGB":
        img = _to_rgb(img)
    out = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))


def jpeg_header_end(data: bytes) -> int | None:
    """Where a JPEG's entropy-coded data starts (its SOS segment): everything before it (EXIF, XMP, IPTC, ICC, the
    frame header with the size) is the header. None when ``data`` is not a JPEG or ends before the SOS segment (a
    header that reaches past a partial read, or a corrupt one). Reads marker lengths only; decodes nothing."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None  # not at a marker: corrupt
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0xDA:  # start of scan: its own header too must be in (a decoder's open reads it)
            return i if i + 2 + int.from_bytes(data[i + 2:i + 4], "big") <= len(data) else None
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None
