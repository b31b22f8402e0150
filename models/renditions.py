"""Renditions for display: a thumbnail and a preview of every image, a video's poster frame and keyframe strip.

Computed in the processor (no Triton), like ``models/pdq``: ``prepare`` decodes the original, writes the JPEGs to
the object store beside it and returns the ``Renditions`` payload; ``infer`` passes it through. The object keys
are derived from the asset id (the original's sha256) and the rendition spec only
(``renditions/<id[:2]>/<id>/<spec>/<file>.jpg``) and the encoding is deterministic, so a retry after a crash
rewrites the same keys with the same bytes; the annotation then goes through the sinks' exactly-once effect like
any other. ``model_version`` carries the spec: changing a size or the quality writes new keys and a new version.

Images: decoded at a reduced JPEG DCT scale when the preview is much smaller than the original
(``core.imaging.load_image`` ``target``), upright (EXIF orientation), never upscaled; a large image's ingest working
copy (producers/working_copy.py) is read instead of the original when it is at least the preview's size, and the
payload's width and height then come from the event (the original's upright size). Videos: the frames at the
keyframe times every image model annotates (``models.frames.media_frames`` with ``settings.video``); the poster is
the first of them that is not near-black or uniform (else the first).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image, ImageStat
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from urllib3.exceptions import HTTPError

from core import video
from core.imaging import MediaDecodeError, load_image_sized
from core.storage import ObjectStore
from core.triton import TritonClient
from models.base import IMAGE_AND_VIDEO, Item, Model
from models.frames import decode_target, media_frames
from schemas.events import AnnotationPayload, MediaUploaded, Rendition
from schemas.events import Renditions as RenditionsPayload

__all__ = ["SPEC", "RenditionSpec", "Renditions", "is_blank", "rendition_key"]


@dataclass(frozen=True)
class RenditionSpec:
    """What the renditions are; ``tag`` names it in the object keys and the model version."""

    thumb: int = 320  # longest side
    preview: int = 1280  # longest side
    frame_height: int = 180  # a video's keyframe strip
    quality: int = 82  # JPEG, progressive

    @property
    def tag(self) -> str:
        return f"r1-t{self.thumb}-p{self.preview}-f{self.frame_height}-q{self.quality}"


SPEC = RenditionSpec()


def rendition_key(asset_id: str, spec_tag: str, file: str) -> str:
    """Deterministic object key of one rendition (``file``: thumb.jpg, preview.jpg, frame-<t_ms>.jpg)."""
    return f"renditions/{asset_id[:2]}/{asset_id}/{spec_tag}/{file}"


def is_blank(img: Image.Image) -> bool:
    """Near-black or uniform (a fade, a black leader, a test card colour): not a poster."""
    grey = img.convert("L").resize((32, 32), Image.Resampling.BILINEAR)
    stat = ImageStat.Stat(grey)
    return stat.mean[0] < 16.0 or stat.stddev[0] < 6.0


def fit(img: Image.Image, longest: int) -> Image.Image:
    """Shrink so that the longest side is ``longest``; never enlarge."""
    w, h = img.size
    if max(w, h) <= longest:
        return img
    scale = longest / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_height(img: Image.Image, height: int) -> Image.Image:
    w, h = img.size
    if h <= height:
        return img
    return img.resize((max(1, round(w * height / h)), height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    """A progressive JPEG without metadata; the same pixels always give the same bytes."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality, progressive=True, optimize=True)
    return buf.getvalue()


def _boxed(obj: Any) -> np.ndarray:
    """A 0-d object array: the runtime stacks rows with np.stack, which keeps each object whole."""
    arr = np.empty((), dtype=object)
    arr[()] = obj
    return arr


class Renditions(Model):
    name = "renditions"
    task = "display renditions (thumbnail, preview; videos: poster + keyframe strip), no Triton"
    version = "renditions"  # + the spec (model_version)
    source_package = "Pillow + PyAV (algorithmic, no weights)"
    source_registry = "none"
    licence = "HPND (Pillow), BSD-3-Clause (PyAV)"
    media_types = IMAGE_AND_VIDEO
    outputs = ["PAYLOAD"]
    served_by_triton = False
    max_batch = 32
    spec = SPEC
    input_side = SPEC.preview  # the largest rendition: the ingest working copy serves it (producers/ingest.py)

    @cached_property
    def model_version(self) -> str:
        return f"{self.version}-{self.spec.tag}"

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(self.settings)

    # ---- the processor ---------------------------------------------------------------------------
    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        payload = self.render(event, data)
        return [Item(event, None, {"MEDIA": _boxed(payload)})]

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.empty(len(inputs["MEDIA"]), dtype=object)
        for i, payload in enumerate(inputs["MEDIA"]):
            out[i] = payload
        return {"PAYLOAD": out}

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return list(outputs["PAYLOAD"][:n])

    # ---- the renditions --------------------------------------------------------------------------
    def render(self, event: MediaUploaded, data: bytes) -> RenditionsPayload:
        """Make and store every rendition of the asset; the payload lists them. MediaDecodeError for bad media."""
        spec = self.spec
        if event.media_type == "video":
            info = video.probe(data)
            frames = [(ms, img) for ms, img in media_frames(self.settings, event, data) if ms is not None]
            if not frames:
                raise MediaDecodeError("no decodable video frames")
            poster = next((img for _, img in frames if not is_blank(img)), frames[0][1])
            items = self._poster_items(event.asset_id, poster)
            for t_ms, img in frames:
                items.append(self._put(event.asset_id, "frame", f"frame-{t_ms}.jpg", to_height(img, spec.frame_height),
                                       t_ms))
            first = frames[0][1]
            width = info.width if info.width > 0 else first.width
            height = info.height if info.height > 0 else first.height
            return RenditionsPayload(media_type="video", width=width, height=height, duration_ms=info.duration_ms,
                              items=items)
        img, width, height = load_image_sized(data, self.settings.limits.max_image_pixels,
                                              target=decode_target(self.settings, spec.preview))
        wc = event.working_copy
        if wc is not None and self.reads_working_copy(event):  # ``data`` is the copy: the sizes are the original's
            width, height = wc.source_width, wc.source_height
        return RenditionsPayload(media_type="image", width=width, height=height,
                          items=self._poster_items(event.asset_id, img))

    def _poster_items(self, asset_id: str, img: Image.Image) -> list[Rendition]:
        preview = fit(img, self.spec.preview)
        return [self._put(asset_id, "thumb", "thumb.jpg", fit(preview, self.spec.thumb)),
                self._put(asset_id, "preview", "preview.jpg", preview)]

    def _put(self, asset_id: str, name: str, file: str, img: Image.Image, t_ms: int | None = None) -> Rendition:
        data = encode_jpeg(img, self.spec.quality)
        key = rendition_key(asset_id, self.spec.tag, file)
        # the same key and bytes on every attempt: a retry (or a redelivery after kill -9) changes nothing
        for attempt in Retrying(retry=retry_if_exception_type((OSError, HTTPError)), reraise=True,
                                wait=wait_exponential(0.2, max=self.settings.processor.retry_max_wait_s),
                                stop=stop_after_attempt(8)):
            with attempt:
                self.store.put_bytes(key, data, "image/jpeg")
        return Rendition(name=name, key=key, width=img.width, height=img.height,  # type: ignore[arg-type]
                         bytes=len(data), t_ms=t_ms)
