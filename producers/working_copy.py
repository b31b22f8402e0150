"""The working copy: a large image decoded ONCE at ingest, for every model that looks at fewer pixels.

Every image model declares the longest side it looks at (``Model.input_side``: EfficientNet 224, NudeNet 320, PDQ
and COCO 512, faces 640, OCR 960, renditions 1280). For an image larger than the largest of them, ingest decodes the
original once (the pixel-count bomb check on the header, then libjpeg's DCT-scaled decode: ``core.imaging``), turns
it upright (EXIF orientation), shrinks it to that side and stores it as a JPEG (``processor.working_copy_quality``)
beside the renditions, under a key derived from the asset id and the copy's spec only. The ``media.uploaded`` event
names it (``MediaUploaded.working_copy``), so it exists before any processor reads the event and a replay reads the
same bytes. Processors whose model's ``input_side`` is at most the copy's side read it (``Model.reads_working_copy``)
and fall back to the original when it is missing; models that need the original (embedded metadata, full
resolution) and videos read the original as before. docs/benchmarks.md has the measurements.
"""

from __future__ import annotations

import io
import logging

from PIL import Image

from core.imaging import ALLOWED_FORMATS, MediaDecodeError, load_image_sized
from core.settings import Settings
from core.storage import ObjectStore
from models.registry import enabled_models, get_model
from models.renditions import fit, rendition_key
from schemas.events import WorkingCopy

__all__ = ["encode_working_copy", "make_working_copy", "working_copy_key", "working_side"]

log = logging.getLogger(__name__)


def working_side(settings: Settings) -> int | None:
    """The longest side any enabled image model looks at (None: no model would read a working copy)."""
    sides = []
    for name in enabled_models(settings):
        try:
            model = get_model(settings, name)
        except KeyError:
            continue
        if model.consumes == "media" and "image" in model.media_types and model.input_side is not None:
            sides.append(model.input_side)
    return max(sides) if sides else None


def working_copy_key(asset_id: str, side: int, quality: int) -> str:
    """Under the asset's renditions prefix (a delete or purge removes it with them; sinks/lifecycle.py)."""
    return rendition_key(asset_id, f"work-s{side}-q{quality}", "working.jpg")


def encode_working_copy(data: bytes, settings: Settings, side: int) -> tuple[bytes, int, int, int, int] | None:
    """(JPEG, width, height, source width, source height) of the copy, or None when the image is not larger than
    ``side`` (the original is read then). MediaDecodeError for what cannot be decoded within the limits."""
    try:  # the header alone says whether the image is larger than the side (a small photo costs no decode here)
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as head:
            if max(head.size) <= side:
                return None
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError):
        pass  # load_image_sized decides with the configured limits and says why (the reason processors report)
    img, src_w, src_h = load_image_sized(data, settings.limits.max_image_pixels, target=side)
    if max(src_w, src_h) <= side:
        return None
    copy = fit(img, side)  # the same filter as the renditions (Lanczos), so the preview made from it is as sharp
    buf = io.BytesIO()
    copy.save(buf, "JPEG", quality=settings.processor.working_copy_quality)  # no EXIF: upright already
    return buf.getvalue(), copy.width, copy.height, src_w, src_h


def make_working_copy(settings: Settings, store: ObjectStore, asset_id: str, data: bytes,
                      side: int | None) -> WorkingCopy | None:
    """Make and store the working copy of a new image asset (deterministic key and bytes: a retried upload rewrites
    the same object); None when no copy is needed or the image cannot be decoded (processors then read the original
    and dead-letter it with the decoder's reason, as before)."""
    if side is None or not settings.processor.working_copy:
        return None
    try:
        made = encode_working_copy(data, settings, side)
    except MediaDecodeError as exc:
        log.info("no working copy for %s: %s", asset_id[:16], exc.reason)
        return None
    except Exception as exc:  # noqa: BLE001 - hostile bytes must never turn an accepted upload into an error
        log.warning("no working copy for %s: %s: %s", asset_id[:16], type(exc).__name__, exc)
        return None
    if made is None:
        return None
    jpeg, width, height, src_w, src_h = made
    key = working_copy_key(asset_id, side, settings.processor.working_copy_quality)
    store.put_bytes(key, jpeg, "image/jpeg")
    return WorkingCopy(object_key=key, width=width, height=height, size_bytes=len(jpeg), source_width=src_w,
                       source_height=src_h)
